"""What `dfly bench` prints, computed from plain records (pure: no I/O, no clock).

Latency of the supernode is measured per call by the simulated peers.
Registrations count as they are. A schedule call may long-poll (nothing in
flight, `wait_s` > 0): the supernode holds it on purpose until a piece can be
assigned, and says for how long in `waited_s`; its latency is the round trip
minus that. A supernode that does not say (older than `waited_s`): only
schedule calls that asked not to wait or that carried pieces count, and their
whole round trip. The round trips themselves, waits included, are reported too.
The supernode also says how long each reply took it (Server-Timing: from its
reading the request line to its reply, on purpose waits left out), which is
what it costs apart from the network and the simulated peers' own CPU.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass
class CallRecord:
    kind: str          # "register" or "schedule"
    seconds: float
    waited: bool       # a long-poll that may have waited on purpose
    pieces: int = 0
    waited_s: Optional[float] = None   # how long the supernode says it waited on purpose
    server_s: Optional[float] = None   # how long the supernode says the reply took it


def latency(call: CallRecord) -> Optional[float]:
    """The supernode's share of one call's round trip; None when it cannot be told
    from waiting (a long-poll to a supernode that does not report `waited_s`)."""
    if call.waited_s is not None:
        return max(0.0, call.seconds - call.waited_s)
    if call.kind == "schedule" and call.waited and not call.pieces:
        return None
    return call.seconds


@dataclass
class PeerRecord:
    index: int
    wave: int
    seconds: float = 0.0
    length: int = 0
    bytes_from_supernode: int = 0
    bytes_from_peers: int = 0
    error: Optional[str] = None
    calls: List[CallRecord] = field(default_factory=list)
    start_lag_s: Optional[float] = None   # how late it started after its wave's time


def in_supernode(call: CallRecord) -> Optional[float]:
    """The supernode's own time for one call, waits on purpose left out; None when
    it does not say."""
    if call.server_s is None:
        return None
    return max(0.0, call.server_s - (call.waited_s or 0.0))


def percentile(values: List[float], p: float) -> float:
    """The nearest-rank p-th percentile (0 < p <= 100); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def spread(values: List[float]) -> Dict[str, float]:
    out = {"count": len(values)}
    for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)):
        out[name] = round(percentile(values, p), 4) if values else None
    return out


def summarize(peers: List[PeerRecord], wall_s: float, cpu_s: Optional[float] = None) -> dict:
    """`cpu_s`: what the bench process itself used meanwhile (its simulated peers
    compete for the CPUs with the supernode when both run on one machine)."""
    ok = [p for p in peers if p.error is None]
    failed = [p for p in peers if p.error is not None]
    calls = [c for p in peers for c in p.calls]
    registers = [c.seconds for c in calls if c.kind == "register"]
    schedule_calls = [c for c in calls if c.kind == "schedule"]
    schedules = [v for v in map(latency, schedule_calls) if v is not None]
    total = sum(p.length for p in ok)
    supernode = sum(p.bytes_from_supernode for p in ok)
    from_peers = sum(p.bytes_from_peers for p in ok)
    errors: Dict[str, int] = {}
    for p in failed:
        errors[p.error] = errors.get(p.error, 0) + 1
    return {
        "peers": len(peers), "succeeded": len(ok), "failed": len(failed),
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5]),
        "wall_s": round(wall_s, 3),
        "bench_cpu_s": None if cpu_s is None else round(cpu_s, 3),
        "download_s": spread([p.seconds for p in ok]),
        "throughput_bytes_per_s": round(total / wall_s) if wall_s > 0 else None,
        "bytes": {"total": total, "source": 0, "supernode": supernode, "peers": from_peers},
        "peer_share": round(from_peers / total, 4) if total else None,
        "register_latency_s": spread(registers),
        "schedule_latency_s": spread(schedules),
        "schedule_in_supernode_s": spread([v for v in map(in_supernode, schedule_calls) if v is not None]),
        "schedule_round_trip_s": spread([c.seconds for c in schedule_calls]),
        "schedule_calls": len(schedule_calls),
        "schedule_waited_reported": sum(1 for c in schedule_calls if c.waited_s is not None),
        "start_lag_s": spread([p.start_lag_s for p in peers if p.start_lag_s is not None]),
    }


def render(summary: dict, url: str) -> str:
    """The human-readable report."""
    def ms(d: dict) -> str:
        if not d["count"]:
            return "none"
        return "p50 %.1f  p90 %.1f  p99 %.1f  max %.1f ms (%d calls)" % (
            d["p50"] * 1000, d["p90"] * 1000, d["p99"] * 1000, d["max"] * 1000, d["count"])

    def secs(d: dict) -> str:
        if not d["count"]:
            return "none"
        return "p50 %.3f  p90 %.3f  p99 %.3f  max %.3f s" % (d["p50"], d["p90"], d["p99"], d["max"])

    b = summary["bytes"]
    lines = [
        "dfly bench: %d peers for %s in %.2f s: %d ok, %d failed"
        % (summary["peers"], url, summary["wall_s"], summary["succeeded"], summary["failed"]),
        "  download time     %s" % secs(summary["download_s"]),
        "  throughput        %.1f MiB/s, all peers together"
        % ((summary["throughput_bytes_per_s"] or 0) / 1048576.0),
        "  bytes             %d from source, %d from supernode, %d from peers (%.1f%% peers)"
        % (b["source"], b["supernode"], b["peers"], 100 * (summary["peer_share"] or 0)),
        "  register latency  %s" % ms(summary["register_latency_s"]),
        "  schedule latency  %s" % ms(summary["schedule_latency_s"]),
        "    in the supernode %s" % ms(summary["schedule_in_supernode_s"]),
        "  schedule trips    %s, long-polls included" % ms(summary["schedule_round_trip_s"]),
    ]
    if summary.get("start_lag_s", {}).get("count"):
        lines.append("  start lag         %s: each peer's start after its wave's time"
                     % ms(summary["start_lag_s"]).rsplit(" (", 1)[0])
    if summary.get("bench_cpu_s") is not None and summary["wall_s"] > 0:
        lines.append("  this process      %.1f CPU-s, %.1f cores on average (not the supernode's, "
                     "if both share a machine)"
                     % (summary["bench_cpu_s"], summary["bench_cpu_s"] / summary["wall_s"]))
    if summary["schedule_calls"] and not summary["schedule_waited_reported"]:
        lines.append("  (the supernode does not report waited_s: long-polls that came back "
                     "empty are left out of the schedule latency)")
    for error, count in summary["errors"].items():
        lines.append("  failure x%d: %s" % (count, error))
    return "\n".join(lines) + "\n"
