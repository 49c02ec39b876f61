"""Reading `dfly get --trace` files (dfly/peer/trace.py), for the tools that look at them.

bench/ramp.py, bench/timeline.py and bench/traces.py read the same files and
need the same few facts: which files a folder holds (one per host, named by
the file), when a host registered, and where a fetched piece came from. They
are here once. Hosts' clocks line up by each trace's `wall_start` (the testbed
runs every host on one machine, so one clock).

A fetch came from the supernode, from a whole copy, or from a relay (cut-through:
its holder was still fetching the piece). Traces since the `relay` field say
which for each piece; older ones are read as bench/ramp.py always read them:
a relay if the holder's own copy of the piece was complete only after the
fetch began, which needs the holder's trace (and its `peer_id`) in the folder.
"""
import glob
import json
import os
from typing import Dict, List, Optional, Tuple

SUPERNODE = "supernode"   # a piece's holder when the supernode served it (dfly/protocol/messages.py)


def load(paths: List[str]) -> List[Tuple[str, dict]]:
    """(host name, trace) for each file, a folder standing for its *.json files
    (sorted by name)."""
    files: List[str] = []
    for path in paths:
        files.extend(sorted(glob.glob(os.path.join(path, "*.json"))) if os.path.isdir(path) else [path])
    out = []
    for path in files:
        with open(path) as f:
            out.append((os.path.splitext(os.path.basename(path))[0], json.load(f)))
    return out


def event(trace: dict, kind: str) -> Optional[dict]:
    """The first event of this kind, or None."""
    return next((e for e in trace.get("events", ()) if e["kind"] == kind), None)


def registered_at(trace: dict) -> float:
    """When the host registered, as a Unix time."""
    return trace["wall_start"] + event(trace, "registered")["t"]


def whole_at(traces: List[dict]) -> Dict[Tuple[str, int], float]:
    """(peer id, piece) -> when that peer's copy of the piece was complete (Unix time),
    for the traces that name their peer."""
    done: Dict[Tuple[str, int], float] = {}
    for t in traces:
        for p in t.get("pieces", ()):
            if p.get("ok") and t.get("peer_id"):
                done[(t["peer_id"], p["num"])] = t["wall_start"] + p["end_s"]
    return done


def source(piece: dict, wall_start: float, done: Dict[Tuple[str, int], float]) -> str:
    """Where a fetch came from: "failed", "supernode", "relayed" or "whole"; `done`
    is whole_at() of the folder's traces, used when the trace has no relay mark."""
    if not piece.get("ok"):
        return "failed"
    if piece["holder"] == SUPERNODE:
        return SUPERNODE
    if "relay" in piece:
        return "relayed" if piece["relay"] else "whole"
    return "relayed" if done.get((piece["holder"], piece["num"]), 0.0) > wall_start + piece["start_s"] \
        else "whole"
