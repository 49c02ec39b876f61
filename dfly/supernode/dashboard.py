"""What the supernode's dashboard shows: a JSON feed, and the last events.

`GET /dashboard` is a static page (dfly/dashboard_page.py) that polls
`GET /v1/dashboard` about once a second and redraws itself. The feed is read
under each task's lock in one quick pass that copies plain numbers out; all
shaping (sorting, paging, folding pieces into map cells, rates) is done by the
pure functions below, on those copies.

It stays small at a thousand peers on a task: every task is listed with
aggregates only (its peers, how many are done, bytes by where they came from);
the peers of ONE task (the one asked for, else the one with most peers) come a
page at a time (`limit`, at most MAX_PAGE, slowest first, `offset` to page on),
with the task's totals over all its peers beside them; and a piece map folds
the pieces into at most MAP_CELLS cells. So a reply's size is bounded whatever
the swarm's size, and the lock is held O(peers + pieces) per task.

Read-only, and no secret shows: URLs and errors are redacted (redact.py), no
request headers are kept, peer secrets never leave service.py.
"""
import threading
import time
from collections import deque
from typing import Dict, Iterable, List, Optional, Set, Tuple

from dfly.protocol.address import format_address
from dfly.protocol.pieces import piece_range
from dfly.protocol.redact import redact_text, redact_url

MAP_CELLS = 256        # a piece map has at most this many cells
DEFAULT_PAGE = 50      # peers shown per page
MAX_PAGE = 200
MAX_TASKS = 100        # tasks listed (the most recently used)
EVENTS_KEPT = 200      # the ring buffer of events
EVENTS_SHOWN = 50

# What an event says to a caller that may not see task URLs (events that name one).
URL_FREE = {"task_failed": "the task failed", "source_denied": "a source was denied"}

# Piece map cells: every piece of the cell held, some on their way, some held, none.
HELD, IN_FLIGHT, PART, NONE = "#", "~", "+", "."


class Events:
    """The last EVENTS_KEPT things an operator should hear about (a blacklisted
    peer, a failed task, a member lost, a task taken over), newest last. Bounded:
    an old event falls out when a new one comes."""

    def __init__(self, clock=time.time, kept: int = EVENTS_KEPT):
        self.clock = clock
        self._events: deque = deque(maxlen=kept)
        self._lock = threading.Lock()
        self._count = 0

    def record(self, kind: str, text: str, task_id: str = "") -> None:
        with self._lock:
            self._count += 1
            self._events.append({"n": self._count, "at": round(self.clock(), 3), "kind": kind,
                                 "task_id": task_id, "text": text[:300]})

    def last(self, n: int = EVENTS_SHOWN) -> List[dict]:
        with self._lock:
            return list(self._events)[-n:] if n > 0 else []


def count_received(peer, holder: str, size: int, now: float, supernode: str) -> None:
    """A peer reported a piece it fetched from `holder`: tally where its bytes came from."""
    if holder == supernode:
        peer.bytes_from_supernode += size
    else:
        peer.bytes_from_peers += size
    peer.last_piece_at = now


# pure shaping -------------------------------------------------------------------------
def cell_bounds(piece_count: int, cells: int = MAP_CELLS) -> List[Tuple[int, int]]:
    """[lo, hi) piece ranges of each cell: one piece a cell up to `cells` pieces."""
    n = min(piece_count, cells)
    return [(i * piece_count // n, (i + 1) * piece_count // n) for i in range(n)]


def piece_cells(piece_count: int, held: Set[int], inflight: Iterable[int],
                cells: int = MAP_CELLS) -> str:
    """A peer's piece map: one character a cell (HELD, IN_FLIGHT, PART, NONE)."""
    coming = set(inflight)
    bounds = cell_bounds(piece_count, cells)
    if len(bounds) == piece_count:   # a cell a piece
        return "".join(HELD if n in held else IN_FLIGHT if n in coming else NONE
                       for n in range(piece_count))
    out = []
    for lo, hi in bounds:   # set operations over a range run in C: this is per feed, per peer
        have = len(held.intersection(range(lo, hi)))
        if have == hi - lo:
            out.append(HELD)
        elif not coming.isdisjoint(range(lo, hi)):
            out.append(IN_FLIGHT)
        else:
            out.append(PART if have else NONE)
    return "".join(out)


def rarest_per_cell(holder_counts: List[int], cells: int = MAP_CELLS) -> List[int]:
    """Per cell, the fewest peers holding any of its pieces (the swarm's weak spot)."""
    return [min(holder_counts[lo:hi]) for lo, hi in cell_bounds(len(holder_counts), cells)]


def rate_bytes_per_s(received: int, joined_at: float, last_piece_at: float, now: float,
                     done: bool) -> float:
    """A peer's average rate: over its download, or until now while it runs."""
    end = last_piece_at if done and last_piece_at else now
    span = end - joined_at
    return round(received / span, 1) if span > 0 else 0.0


def page_of(rows: List[dict], offset: int, limit: int) -> List[dict]:
    """Peers slowest first (the ones an operator looks for), then by id: one page."""
    ordered = sorted(rows, key=lambda r: (r["held"], r["peer_id"]))
    return ordered[max(0, offset):max(0, offset) + max(0, min(limit, MAX_PAGE))]


def totals_of(rows: List[dict], piece_count: Optional[int]) -> dict:
    """A task's figures over all its peers (shown whatever page is)."""
    return {"peers": len(rows),
            "peers_done": sum(1 for r in rows if piece_count and r["held"] >= piece_count),
            "bytes_from_supernode": sum(r["bytes_from_supernode"] for r in rows),
            "bytes_from_peers": sum(r["bytes_from_peers"] for r in rows),
            "pieces_in_flight": sum(r["in_flight"] for r in rows)}


# reading the service ----------------------------------------------------------------
def peer_row(peer, piece_count: Optional[int], now: float) -> dict:
    """A peer's figures, copied out (caller holds the task's lock; `addr` as a tuple
    until the page is chosen: formatting a thousand is not worth the lock)."""
    held = len(peer.held)
    received = peer.bytes_from_supernode + peer.bytes_from_peers
    done = bool(piece_count) and held >= piece_count
    return {"peer_id": peer.peer_id, "addr": peer.addr, "held": held,
            "in_flight": len(peer.inflight),
            "progress": round(held / piece_count, 4) if piece_count else 0.0,
            "bytes_from_supernode": peer.bytes_from_supernode,
            "bytes_from_peers": peer.bytes_from_peers,
            "rate_bytes_per_s": rate_bytes_per_s(received, peer.joined_at, peer.last_piece_at, now, done),
            "last_seen_s_ago": round(max(0.0, now - peer.last_seen), 1), "errors": peer.errors}


def task_row(task, authorised: bool = True) -> dict:
    """One task's line in the list (caller holds task.cond); its URL (redacted) and
    error only to an `authorised` caller, as in GET /v1/tasks."""
    peers = task.scheduler.peers.values()
    count = task.piece_count
    error = (redact_text(task.error, task.url) if authorised else "failed") if task.error else ""
    return {"task_id": task.task_id, "url": redact_url(task.url) if authorised else None,
            "state": task.state,
            "length": task.length, "piece_count": count, "pieces_cached": len(task.digests),
            "peers": len(task.scheduler.peers),
            "peers_done": sum(1 for p in peers if count and len(p.held) >= count),
            "bytes_from_source": task.source_bytes, "bytes_from_supernode": task.served_bytes,
            "bytes_from_peers": sum(p.bytes_from_peers for p in peers), "error": error}


def task_snapshot(task, now: float, offset: int, limit: int) -> dict:
    """What the detail needs, copied out under the task's lock: every peer's figures,
    one page's piece sets, the supernode's pieces, what is in flight, copies per piece."""
    with task.cond:
        sched = task.scheduler
        count = task.piece_count or 0
        rows = [peer_row(p, count, now) for p in sched.peers.values()]
        page = page_of(rows, offset, limit)
        sets = {row["peer_id"]: (set(sched.peers[row["peer_id"]].held),
                                 set(sched.peers[row["peer_id"]].inflight)) for row in page}
        coming: Set[int] = set()
        for peer in sched.peers.values():
            coming.update(peer.inflight)
        return {"task_id": task.task_id, "piece_count": count, "piece_size": task.piece_size,
                "rows": rows, "page": page, "sets": sets, "coming": coming,
                "supernode_pieces": set(sched.supernode_pieces),
                "copies": [sched.holder_count(n) for n in range(count)]}


def task_detail(task, now: float, offset: int, limit: int, supernode_name: str,
                authorised: bool = True) -> dict:
    """The chosen task: totals, one page of peers with their piece maps, the
    supernode's own map and the rarest copy per cell. The lock is held only to copy
    (task_snapshot); maps and totals are made from the copies. Peer addresses only to
    an `authorised` caller (as GET /v1/tasks shows no holder addresses to others)."""
    snap = task_snapshot(task, now, offset, limit)
    count = snap["piece_count"]
    page = snap["page"]
    for row in page:
        held, inflight = snap["sets"][row["peer_id"]]
        row["map"] = piece_cells(count, held, inflight) if count else ""
        row["addr"] = format_address(row["addr"][0], row["addr"][1]) if authorised else None
    return {"task_id": snap["task_id"], "piece_count": count,
            "piece_size": snap["piece_size"], "cells": len(cell_bounds(count)) if count else 0,
            "offset": max(0, offset), "limit": min(limit, MAX_PAGE),
            "totals": totals_of(snap["rows"], count),
            "supernode": {"name": supernode_name,
                          "map": piece_cells(count, snap["supernode_pieces"], ()) if count else ""},
            "in_flight_map": piece_cells(count, set(), snap["coming"]) if count else "",
            "rarest": rarest_per_cell(snap["copies"]) if count else [],
            "peers": page}


def events_shown(events: List[dict], authorised: bool) -> List[dict]:
    """Events as a caller may see them: to one not authorised, none names a URL."""
    if authorised:
        return events
    return [dict(e, text=URL_FREE[e["kind"]]) if e["kind"] in URL_FREE else e for e in events]


def feed(supernode, task_id: str = "", offset: int = 0, limit: int = DEFAULT_PAGE,
         authorised: bool = True) -> dict:
    """GET /v1/dashboard: every task (aggregates), one task in detail, the cluster, events.
    `authorised`: the caller may see task URLs (redacted all the same), as in GET /v1/tasks."""
    now = supernode.clock()
    with supernode.loading() as loaded:
        tasks = list(loaded.values())
    tasks.sort(key=lambda t: -t.last_access)
    rows, named, busiest, most = [], None, None, -1
    for task in tasks[:MAX_TASKS]:
        with task.cond:
            rows.append(task_row(task, authorised))
        if task.task_id == task_id:
            named = task
        if rows[-1]["peers"] > most:
            busiest, most = task, rows[-1]["peers"]
    chosen = named or busiest   # a task named but gone: the busiest instead
    detail = (task_detail(chosen, now, offset, limit, supernode.me, authorised)
              if chosen is not None else None)
    return {"me": supernode.me, "at": round(supernode.wall_clock(), 3), "tasks": rows,
            "tasks_total": len(tasks), "task": detail, "cluster": supernode.cluster_status(),
            "events": events_shown(supernode.events.last(), authorised)}


def piece_bytes(task, num: int) -> int:
    """Piece `num`'s size in bytes (the last one is short)."""
    if task.length is None:
        return task.piece_size
    return piece_range(num, task.length, task.piece_size)[1]


def query_int(query: Dict[str, list], name: str, default: int) -> int:
    text = (query.get(name) or [""])[0]
    return int(text) if text.isascii() and text.isdigit() and len(text) < 9 else default
