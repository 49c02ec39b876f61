"""The ramp of a swarm, in numbers, from its hosts' `dfly get --trace` files.

    python3 bench/ramp.py DIR ...        # each DIR one run (testbed --trace-dir)
    sudo python3 bench/testbed.py --counts 8 --scenarios dfly,dfly-cut --trace-dir /tmp/traces

Per run: how many piece fetches came from the supernode, from peers holding the
piece whole, and from relays (cut-through: the holder's own copy was complete
only after the fetch began), how many attempts failed; the MiB each host had
verified 0.5, 1, 1.5 and 2 s after it registered (median over hosts); when the
last piece left the supernode and when the last host was done (seconds after
the first registration). Hosts' clocks are lined up by `wall_start` (one
machine in the testbed). bench/timeline.py draws the same traces,
bench/traces.py reads more from them; bench/tracefiles.py reads them for all three.
"""
import argparse
import os
import statistics
import sys
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # tracefiles, also when imported
from tracefiles import load as load_files  # noqa: E402
from tracefiles import registered_at, source, whole_at  # noqa: E402

MARKS = (0.5, 1.0, 1.5, 2.0)


def load(folder: str) -> List[dict]:
    return [trace for _, trace in load_files([folder])]


def sources(traces: List[dict]) -> Dict[str, int]:
    """Fetches by where they came from (tracefiles.source)."""
    done = whole_at(traces)
    out = {"supernode": 0, "whole": 0, "relayed": 0, "failed": 0}
    for t in traces:
        for p in t["pieces"]:
            out[source(p, t["wall_start"], done)] += 1
    return out


def ramp(traces: List[dict]) -> Dict[float, float]:
    """Median MiB verified by each mark after the host registered."""
    got: Dict[float, List[float]] = {m: [] for m in MARKS}
    for t in traces:
        began = registered_at(t) - t["wall_start"]
        for m in MARKS:
            got[m].append(sum(p["bytes"] for p in t["pieces"]
                              if p.get("ok") and p["end_s"] - began <= m) / 2 ** 20)
    return {m: statistics.median(v) for m, v in got.items()}


def tail(traces: List[dict]) -> Tuple[float, float]:
    """(last piece out of the supernode, last host done), from the first registration."""
    first = min(registered_at(t) for t in traces)
    from_sn = [t["wall_start"] + p["end_s"] for t in traces for p in t["pieces"]
               if p.get("ok") and p["holder"] == "supernode"]
    ends = [t["wall_start"] + max(p["end_s"] for p in t["pieces"] if p.get("ok")) for t in traces]
    return (max(from_sn) - first if from_sn else 0.0), max(ends) - first


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="folders of one run's traces each")
    args = p.parse_args(argv)
    for folder in args.runs:
        traces = load(folder)
        if not traces:
            sys.stderr.write("ramp: no traces in %s\n" % folder)
            return 2
        s, r, (out, last) = sources(traces), ramp(traces), tail(traces)
        print("%s: supernode %d, whole copies %d, relayed %d, failed %d; MiB at %s; "
              "last piece out of the supernode %.2f s, last host %.2f s"
              % (folder, s["supernode"], s["whole"], s["relayed"], s["failed"],
                 " / ".join("%gs %.1f" % (m, r[m]) for m in MARKS), out, last))
    return 0


if __name__ == "__main__":
    sys.exit(main())
