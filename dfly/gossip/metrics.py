"""The gossip member's metric families (docs/METRICS.md), read at scrape time from
whichever member `node_of()` names (none yet, or not in gossip mode: no samples)."""
from typing import Callable, Dict, Optional


def watch(registry, node_of: Callable[[], Optional[object]]) -> None:
    registry.gauge("dfly_gossip_members", "Members of the gossip cluster as this member sees them, "
                   "by state (alive, suspect, dead, left)", ("state",),
                   read=lambda: _by_state(node_of()))
    registry.counter("dfly_gossip_events_total", "Gossip protocol events and refused packets, by kind: "
                     "probes, probes_acked, probes_failed, suspicions, refutations, declared_dead, "
                     "address_conflicts, dropped_forged, dropped_replayed, dropped_stale, "
                     "dropped_unknown_key, dropped_malformed, tcp_failed, tcp_busy, ...", ("event",),
                     read=lambda: _events(node_of()))


def _by_state(node) -> Dict[tuple, int]:
    if node is None:
        return {}
    counts = {(state,): 0 for state in ("alive", "suspect", "dead", "left")}
    for member in node.members():
        counts[(member["state"],)] = counts.get((member["state"],), 0) + 1
    return counts


def _events(node) -> Dict[tuple, int]:
    return {} if node is None else {(name,): value for name, value in sorted(node.stats().items())}
