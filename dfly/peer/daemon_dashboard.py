"""What a daemon's own dashboard shows: its cache, its seeding tasks, its mirror
and proxy traffic.

`GET /dashboard` on the daemon's front listener is a static page
(dfly/dashboard_page.py) polling `GET /v1/dashboard`. Traffic is counted per
(kind, outcome) and the last RECENT requests kept in a bounded ring, each as
its method, status and target with every query value redacted (redact.py); no
header is kept, and the targets go only to callers on the daemon's own host.
The cache list is its largest CACHE_SHOWN entries, so a cache
of a million files still makes a small reply.
"""
import threading
import time
from collections import deque
from typing import Dict, List, Tuple

from dfly.protocol.redact import redact_url

RECENT = 50
CACHE_SHOWN = 100


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    return "client_error" if status < 500 else "server_error"


class Traffic:
    """Mirror and proxy requests this daemon answered: counts and the last few."""

    def __init__(self, clock=time.time, kept: int = RECENT):
        self.clock = clock
        self._lock = threading.Lock()
        self._counts: Dict[Tuple[str, str], int] = {}
        self._recent: deque = deque(maxlen=kept)

    def answered(self, kind: str, method: str, target: str, status: int) -> None:
        """`kind`: mirror or proxy; `target`: the request target as sent (redacted here)."""
        key = (kind, outcome_of(status))
        entry = {"at": round(self.clock(), 3), "kind": kind, "method": method[:16],
                 "status": status, "target": redact_url(target)[:300]}
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            self._recent.append(entry)

    def shown(self) -> dict:
        with self._lock:
            counts = sorted(self._counts.items())
            recent = list(self._recent)
        return {"counts": [{"kind": k, "outcome": o, "requests": n} for (k, o), n in counts],
                "recent": recent}


def cache_shown(entries: List[Tuple[str, int, float]], task_of: Dict[str, str], now: float,
                limit: int = CACHE_SHOWN) -> List[dict]:
    """The largest `limit` cache entries (key, size, last used), with the task each is seeded as."""
    largest = sorted(entries, key=lambda e: (-e[1], e[0]))[:limit]
    return [{"key": key, "size": size, "age_s": round(max(0.0, now - used), 1),
             "task_id": task_of.get(key, "")} for key, size, used in largest]


def feed(daemon, authorised: bool = True) -> dict:
    """GET /v1/dashboard on a daemon. `authorised` (a caller on this host) also sees the
    targets of the last requests (redacted all the same), as the supernode shows task URLs."""
    now = time.time()
    cache = daemon.cache
    entries = cache.entries()
    with daemon._lock:
        task_of = dict(daemon._task_of)
    seeded = {tid: key for key, tid in task_of.items()}
    return {"peer_id": daemon.p2p.peer_id, "at": round(now, 3), "stats": daemon.stats(),
            "cache": {"bytes": sum(e[1] for e in entries), "limit_bytes": cache.limit_bytes,
                      "files": len(entries), "entries": cache_shown(entries, task_of, now)},
            "seeding": [{"task_id": tid, "path": seeded.get(tid, ""), "supernode": supernode}
                        for tid, supernode in sorted(daemon.p2p.seeding.items())],
            "traffic": traffic_for(daemon.traffic.shown(), authorised)}


def traffic_for(traffic: dict, authorised: bool) -> dict:
    if not authorised:
        traffic["recent"] = [dict(r, target=None) for r in traffic["recent"]]
    return traffic
