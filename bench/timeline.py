"""Timeline of a swarm from its hosts' `dfly get --trace` files, as an SVG.

    python3 bench/timeline.py TRACE.json ... [-o timeline.svg] [--title TEXT]
    python3 bench/timeline.py DIR [-o timeline.svg]     # every *.json in DIR
    sudo python3 bench/testbed.py --counts 8 --trace-dir /tmp/traces   # collect them first

One row per host (named by its trace file), sorted by when it finished; each
piece a bar from its first request to its last byte, stacked in as many lanes
as the host had pieces in flight at once, coloured by where it came from (the
supernode, another peer's whole copy, a relay: a peer still fetching it, cut-
through; a failed attempt in red; bench/tracefiles.py tells them apart). A tick marks registration,
a black bar the whole-file digest check, the row's end when the file was
complete. Hosts' clocks are lined up by each trace's `wall_start` (one machine
in the testbed, so one clock). The gaps and the ramp docs/BENCHMARKS.md talks
about are the white space between bars and the thin start of each row.
"""
import argparse
import os
import sys
from typing import List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # tracefiles, also when imported
from tracefiles import event, load, source, whole_at  # noqa: E402

COLOURS = {"supernode": "#7b5ea7", "whole": "#2e9e5b", "relayed": "#f0a020", "failed": "#d62728"}
LABELS = (("supernode", "from the supernode"), ("whole", "a peer's whole copy"),
          ("relayed", "relayed (cut-through)"), ("failed", "failed attempt"))
ROW_H = 28          # pixels per host row
LEFT, RIGHT, TOP, BOTTOM = 110, 20, 40, 66
WIDTH = 1000


def lanes(intervals: List[Tuple[float, float]]) -> Tuple[List[int], int]:
    """A lane per interval so that none overlaps another in its lane (first free lane,
    by start time); and the number of lanes used."""
    order = sorted(range(len(intervals)), key=lambda i: intervals[i])
    ends: List[float] = []
    lane = [0] * len(intervals)
    for i in order:
        start, end = intervals[i]
        for k, busy_until in enumerate(ends):
            if busy_until <= start:
                lane[i], ends[k] = k, end
                break
        else:
            lane[i] = len(ends)
            ends.append(end)
    return lane, max(1, len(ends))


def host_rows(traces: List[Tuple[str, dict]]) -> List[dict]:
    """Per host, in seconds since the first host started: its pieces (start, end, kind),
    registration, digest check and end; sorted by end."""
    t0 = min(trace["wall_start"] for _, trace in traces)
    done = whole_at([trace for _, trace in traces])
    rows = []
    for name, trace in traces:
        shift = trace["wall_start"] - t0
        kinds = [source(p, trace["wall_start"], done) for p in trace.get("pieces", ())]
        pieces = [(shift + p["start_s"], shift + p["end_s"], kind)
                  for p, kind in zip(trace.get("pieces", ()), kinds)]
        registered = event(trace, "registered")
        finished = event(trace, "finished") or event(trace, "failed")
        check = event(trace, "digest_check")
        end = shift + finished["t"] if finished else max([p[1] for p in pieces] or [shift])
        rows.append({"name": name, "pieces": pieces, "end": end,
                     "registered": shift + registered["t"] if registered else None,
                     "check": (shift + check["t"] - check.get("seconds", 0.0), shift + check["t"])
                     if check and check.get("seconds") else None,
                     "from_peers": sum(p["bytes"] for p, kind in zip(trace.get("pieces", ()), kinds)
                                       if kind in ("whole", "relayed")),
                     "bytes": sum(p["bytes"] for p in trace.get("pieces", ()) if p.get("ok", True))})
    rows.sort(key=lambda r: (r["end"], r["name"]))
    return rows


def svg(traces: List[Tuple[str, dict]], title: str = "") -> str:
    rows = host_rows(traces)
    span = max([r["end"] for r in rows] + [p[1] for r in rows for p in r["pieces"]] + [0.001])
    height = TOP + ROW_H * len(rows) + BOTTOM
    scale = (WIDTH - LEFT - RIGHT) / span

    def x(t: float) -> float:
        return round(LEFT + t * scale, 1)

    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
             'font-family="sans-serif" font-size="12">' % (WIDTH, height, WIDTH, height),
             '<rect width="100%" height="100%" fill="white"/>',
             '<text x="%d" y="20" font-size="14">%s</text>' % (LEFT, _esc(title or _title(rows)))]
    step = _nice(span / 8)
    t = 0.0
    while t <= span + 1e-9:
        parts.append('<line x1="%s" x2="%s" y1="%d" y2="%d" stroke="#ddd"/>'
                     % (x(t), x(t), TOP - 4, TOP + ROW_H * len(rows)))
        parts.append('<text x="%s" y="%d" text-anchor="middle">%g</text>'
                     % (x(t), TOP + ROW_H * len(rows) + 16, round(t, 3)))
        t += step
    parts.append('<text x="%d" y="%d" text-anchor="middle">seconds</text>'
                 % ((LEFT + WIDTH - RIGHT) // 2, TOP + ROW_H * len(rows) + 34))
    for i, row in enumerate(rows):
        parts.extend(_row(row, TOP + i * ROW_H, x))
    parts.extend(_legend(height - 8))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _row(row: dict, top: int, x) -> List[str]:
    out = ['<text x="%d" y="%d" text-anchor="end">%s</text>' % (LEFT - 6, top + ROW_H - 8, _esc(row["name"]))]
    lane, count = lanes([(s, e) for s, e, _ in row["pieces"]])
    h = (ROW_H - 4) / count
    for (start, end, kind), k in zip(row["pieces"], lane):
        out.append('<rect class="piece %s" x="%s" y="%.1f" width="%s" height="%.1f" fill="%s"/>'
                   % (kind, x(start), top + 2 + k * h, max(0.5, round(x(end) - x(start), 1)),
                      max(0.5, h - 0.5), COLOURS[kind]))
    if row["registered"] is not None:
        out.append('<line class="registered" x1="%s" x2="%s" y1="%d" y2="%d" stroke="#000"/>'
                   % (x(row["registered"]), x(row["registered"]), top + 2, top + ROW_H - 2))
    if row["check"] is not None:
        began, ended = row["check"]
        out.append('<rect class="check" x="%s" y="%d" width="%s" height="3" fill="#000"/>'
                   % (x(began), top + ROW_H - 3, max(0.5, round(x(ended) - x(began), 1))))
    out.append('<line class="end" x1="%s" x2="%s" y1="%d" y2="%d" stroke="#000" stroke-width="2"/>'
               % (x(row["end"]), x(row["end"]), top + 1, top + ROW_H - 1))
    return out


def _legend(y: int) -> List[str]:
    out, at = [], LEFT
    for kind, label in LABELS:
        out.append('<rect x="%d" y="%d" width="12" height="10" fill="%s"/>' % (at, y - 9, COLOURS[kind]))
        out.append('<text x="%d" y="%d">%s</text>' % (at + 16, y, label))
        at += 7 * len(label) + 24
    out.append('<text x="%d" y="%d">| registered, &#9646; file complete</text>' % (at, y))
    return out


def _title(rows: List[dict]) -> str:
    pieces = sum(len(r["pieces"]) for r in rows)
    moved = sum(r["bytes"] for r in rows)
    share = sum(r["from_peers"] for r in rows) / moved if moved else 0.0
    return "%d hosts, %d piece fetches, %.0f%% of the bytes from peers" % (len(rows), pieces, 100 * share)


def _nice(v: float) -> float:
    for m in (1, 2, 5):
        for e in range(-3, 5):
            step = m * 10 ** e
            if step >= v:
                return step
    return v


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="bench/timeline.py", description=__doc__.splitlines()[0])
    p.add_argument("traces", nargs="+", help="trace files of `dfly get --trace`, or folders of them")
    p.add_argument("-o", "--output", default="timeline.svg")
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    try:
        traces = load(args.traces)
    except (OSError, ValueError) as e:
        sys.stderr.write("timeline: cannot read the traces: %s\n" % e)
        return 2
    if not traces:
        sys.stderr.write("timeline: no trace files given\n")
        return 2
    temp = args.output + ".tmp"
    with open(temp, "w") as f:
        f.write(svg(traces, args.title))
    os.replace(temp, args.output)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
