"""A swarm's figures from its hosts' `dfly get --trace` files (one testbed run's folder).

    python3 bench/traces.py DIR [--rate 100]            # DIR: testbed --trace-dir's n8-run1, ...
    python3 bench/traces.py BEFORE AFTER --rate 100      # both, then their headline figures side by side
    sudo python3 bench/testbed.py --counts 8 --rate 100 --trace-dir /tmp/tr   # collect them first

Times are seconds after the run's first registration (hosts' clocks lined up by
`wall_start`: the testbed's hosts share one machine, so one clock); rates are
payload Mbit/s (10^6 bits).
- The supernode: its egress in 0.1 s bins (the pieces hosts fetched from it),
  when its last piece left, its mean rate from its first piece's request to its
  last piece's end, and the share of that time with 0, 1, ... of its pieces in
  flight, and, with --rate, that rate against the payload a link of
  that rate carries (TCP/IP over Ethernet: 1448 of each 1514 bytes, 95.6 %).
- Per host: receive and send rate while it downloaded (its first request to its
  last piece's end) and in its body (from --ramp, 1 s, after its first request
  until the supernode's last piece left), the share of that time with 0, 1, ... fetches in flight
  (`parallel` is the trace's slot count), the pieces it still lacked when the
  supernode's last piece left (the tail), how long it took after that and at
  what rate it received then.
- Slot refill gaps: from a fetch's end to the host's next fetch start (median, p90);
  schedule calls' latency (a refill waits for one), with and without the time
  the supernode held the call on purpose (`waited_s`), and report-only calls.
- Relayed fetches (cut-through): count and duration against fetches from the
  supernode and from whole copies; chains (the relay was itself fed by a relay);
  how long after its relay's own fetch ended a relayed fetch ended.

What the traces cannot give, and so this tool does not print:
- bytes within a fetch over time: a trace has each piece's request and last
  byte only, so a piece's bytes are spread evenly over that span (the request's
  round trip included; a relayed piece really follows its source's pace);
- bytes of failed attempts (a trace keeps that one failed, not how much came):
  left out of every rate; they still count as fetches in flight;
- which worker ran which fetch: refill gaps pair each fetch's end with the
  host's next fetch start not yet paired (first freed, first refilled); a start
  with no end waiting is an initial fill, not a gap; ends never followed by a
  start (the download's last) are not gaps;
- what the supernode sent to hosts without a trace, and what it fetched from
  the origin; the link rate (give --rate);
- send rates need each trace's `peer_id` (written by `dfly get --trace`);
  relay chains and the relay's lag need the relay's own trace in the folder.
  Traces from before the `relay` mark: a fetch counts as relayed when its
  holder's copy was complete only after the fetch began (bench/tracefiles.py);
  Before `parallel` the shares in flight go up to the most seen at once,
  without the slot count.
"""
import argparse
import json
import math
import os
import statistics
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)                    # tracefiles, also when imported
sys.path.insert(0, os.path.dirname(HERE))   # dfly, for the percentile dfly bench reports
from tracefiles import SUPERNODE, event, load, registered_at, source, whole_at  # noqa: E402

from dfly.bench.report import percentile  # noqa: E402

BIN_S = 0.1
PAYLOAD_SHARE = 1448 / 1514   # TCP payload (timestamps on) in an Ethernet frame as tc counts it
RAMP_S = 1.0   # a host's "body" rates start this long after its first request (past its ramp)


@dataclass(frozen=True)
class Fetch:
    num: int
    holder: str     # a peer id, or "supernode"
    size: int       # bytes
    start: float    # its request, seconds after the run's first registration
    end: float      # its last byte (or its failure)
    kind: str       # "supernode", "whole", "relayed" or "failed" (tracefiles.source)


@dataclass(frozen=True)
class Call:
    """A schedule call: how long it took, how much of that the supernode held it on
    purpose (a long-poll for a piece to become assignable), and whether it only reported."""
    latency_s: float
    waited_s: float
    reporter: bool


@dataclass(frozen=True)
class Host:
    name: str
    peer_id: str          # "" when the trace does not name it
    registered: float
    parallel: int         # the download's slots; 0 when the trace does not say
    fetches: Tuple[Fetch, ...]
    calls: Tuple[Call, ...] = ()


def hosts_from(traces: List[Tuple[str, dict]]) -> List[Host]:
    """Each (name, trace) of a host that registered as a Host, times from the first
    registration of them all."""
    traces = [(name, t) for name, t in traces if event(t, "registered")]
    if not traces:
        return []
    t0 = min(registered_at(t) for _, t in traces)
    done = whole_at([t for _, t in traces])
    out = []
    for name, t in traces:
        shift = t["wall_start"] - t0
        fetches = tuple(Fetch(p["num"], p["holder"], p["bytes"], shift + p["start_s"], shift + p["end_s"],
                              source(p, t["wall_start"], done))
                        for p in t.get("pieces", ()))
        calls = tuple(Call(c["latency_s"], c.get("waited_s") or 0.0, bool(c.get("reporter")))
                      for c in t.get("schedules", ()))
        reg = event(t, "registered")
        out.append(Host(name, t.get("peer_id", ""), registered_at(t) - t0, reg.get("parallel", 0), fetches,
                        calls))
    return out


# -- small measures ------------------------------------------------------------------------
def mbit_s(size: float, seconds: float) -> float:
    return size * 8 / 1e6 / seconds if seconds > 0 else 0.0


def median(values: Sequence[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def p90(values: Sequence[float]) -> Optional[float]:
    """The nearest-rank 90th percentile (as `dfly bench` reports them); None for none."""
    return percentile(list(values), 90) if values else None


def overlap(start: float, end: float, lo: float, hi: float) -> float:
    return max(0.0, min(end, hi) - max(start, lo))


def bytes_within(fetches: Sequence[Fetch], lo: float, hi: float) -> float:
    """The fetches' bytes that arrived in [lo, hi), each spread evenly over its span."""
    total = 0.0
    for f in fetches:
        span = f.end - f.start
        if span <= 0:
            total += f.size if lo <= f.end < hi else 0
        else:
            total += f.size * overlap(f.start, f.end, lo, hi) / span
    return total


def binned_mbit_s(fetches: Sequence[Fetch], bin_s: float = BIN_S) -> List[float]:
    """Mbit/s in each bin from 0 to the last fetch's end."""
    last = max((f.end for f in fetches), default=0.0)
    count = int(math.ceil(last / bin_s - 1e-9)) if last > 0 else 0
    return [mbit_s(bytes_within(fetches, i * bin_s, (i + 1) * bin_s), bin_s) for i in range(count)]


def in_flight_shares(fetches: Sequence[Fetch], lo: float, hi: float) -> List[float]:
    """Share of [lo, hi) with k fetches in flight, for k = 0 .. the most seen."""
    points = sorted({lo, hi} | {t for f in fetches for t in (f.start, f.end) if lo < t < hi})
    shares: List[float] = []
    for a, b in zip(points, points[1:]):
        k = sum(1 for f in fetches if f.start <= a and f.end >= b)
        shares.extend([0.0] * (k + 1 - len(shares)))
        shares[k] += (b - a) / (hi - lo)
    return shares


def refill_gaps(fetches: Sequence[Fetch]) -> List[float]:
    """Each start paired with the earliest fetch end before it not yet paired (first
    freed, first refilled): the gaps. A start with no end waiting fills a slot never
    used; an end never followed by a start ends the download."""
    moments = sorted([(f.end, 0) for f in fetches] + [(f.start, 1) for f in fetches])
    waiting: List[float] = []
    gaps = []
    for t, is_start in moments:   # at one moment an end frees a slot before a start takes it
        if not is_start:
            waiting.append(t)
        elif waiting:
            gaps.append(t - waiting.pop(0))
    return gaps


# -- the figures ---------------------------------------------------------------------------
def supernode_figures(hosts: List[Host], rate_mbit_s: float = 0.0) -> dict:
    sent = [f for h in hosts for f in h.fetches if f.kind == SUPERNODE]
    if not sent:
        return {"pieces": 0}
    first, last = min(f.start for f in sent), max(f.end for f in sent)
    out = {"pieces": len(sent), "bytes": sum(f.size for f in sent), "first_request_s": first,
           "last_out_s": last, "mean_mbit_s": mbit_s(sum(f.size for f in sent), last - first),
           "mean_in_flight": sum(f.end - f.start for f in sent) / (last - first) if last > first else 0.0,
           "in_flight": in_flight_shares(sent, first, last) if last > first else [1.0],
           "egress_mbit_s": binned_mbit_s(sent)}
    if rate_mbit_s:
        out["link_payload_mbit_s"] = rate_mbit_s * PAYLOAD_SHARE
        out["of_link_payload"] = out["mean_mbit_s"] / out["link_payload_mbit_s"]
    return out


def host_figures(host: Host, hosts: List[Host], pieces: int, supernode_last: Optional[float],
                 ramp_s: float = RAMP_S) -> dict:
    got = [f for f in host.fetches if f.kind != "failed"]
    if not got:
        return {"name": host.name, "pieces": 0}
    served = [f for h in hosts for f in h.fetches if f.holder == host.peer_id and f.kind != "failed"] \
        if host.peer_id else None
    lo, hi = min(f.start for f in host.fetches), max(f.end for f in got)
    out = {"name": host.name, "pieces": len(got), "registered_s": host.registered, "first_request_s": lo,
           "done_s": hi, "parallel": host.parallel,
           "in_flight": in_flight_shares(host.fetches, lo, hi) if hi > lo else [1.0],
           "refill_gaps_s": refill_gaps(host.fetches)}
    out["receive_mbit_s"], out["send_mbit_s"] = rates(got, served, lo, hi)
    out["body_receive_mbit_s"] = out["body_send_mbit_s"] = out["tail_mbit_s"] = None
    if supernode_last is not None:
        if supernode_last > lo + ramp_s:   # past its ramp, while the supernode still sent
            body = rates(got, served, lo + ramp_s, supernode_last)
            out["body_receive_mbit_s"], out["body_send_mbit_s"] = body
        out["tail_pieces"] = pieces - len({f.num for f in got if f.end <= supernode_last})
        out["tail_s"] = max(0.0, hi - supernode_last)
        if out["tail_s"] > 0:
            out["tail_mbit_s"] = rates(got, None, supernode_last, hi)[0]
    return out


def rates(got: Sequence[Fetch], served: Optional[Sequence[Fetch]], lo: float, hi: float
          ) -> Tuple[float, Optional[float]]:
    """Mbit/s received (of `got`) and sent (of `served`, None: unknown) within [lo, hi)."""
    sent = None if served is None else mbit_s(bytes_within(served, lo, hi), hi - lo)
    return mbit_s(bytes_within(got, lo, hi), hi - lo), sent


def relay_figures(hosts: List[Host]) -> dict:
    """Relayed fetches against the others; chains and lags where the relay's own trace is here."""
    own: Dict[Tuple[str, int], Fetch] = {(h.peer_id, f.num): f for h in hosts if h.peer_id
                                         for f in h.fetches if f.kind != "failed"}
    every = [f for h in hosts for f in h.fetches]
    relayed = [f for f in every if f.kind == "relayed"]
    fed = [own[(f.holder, f.num)] for f in relayed if (f.holder, f.num) in own]
    out = {}
    for kind, kinds in ((SUPERNODE, (SUPERNODE,)), ("whole", ("whole",)), ("relayed", ("relayed",)),
                        ("failed", ("failed",)), ("not_relayed", (SUPERNODE, "whole"))):
        times = [f.end - f.start for f in every if f.kind in kinds]
        out[kind] = {"count": len(times), "median_s": median(times), "p90_s": p90(times)}
    lags = [f.end - own[(f.holder, f.num)].end for f in relayed if (f.holder, f.num) in own]
    out["relays_known"] = len(fed)   # relayed fetches whose relay's own fetch is in the folder
    out["chained"] = sum(1 for f in fed if f.kind == "relayed")
    out["lag_median_s"], out["lag_p90_s"] = median(lags), p90(lags)
    return out


def call_figures(hosts: List[Host]) -> dict:
    """Schedule calls (asking for pieces, reports riding along) and report-only calls:
    latency, and latency less the supernode's deliberate hold (the call's own cost)."""
    asks = [c for h in hosts for c in h.calls if not c.reporter]
    reports = [c.latency_s for h in hosts for c in h.calls if c.reporter]
    own = [c.latency_s - c.waited_s for c in asks]
    return {"count": len(asks), "latency_median_s": median([c.latency_s for c in asks]),
            "latency_p90_s": p90([c.latency_s for c in asks]), "own_median_s": median(own),
            "own_p90_s": p90(own), "reports": len(reports), "report_median_s": median(reports)}


def analyse(hosts: List[Host], rate_mbit_s: float = 0.0, ramp_s: float = RAMP_S) -> dict:
    """Every figure of one run (see the module's docstring), as plain data."""
    pieces = len({f.num for h in hosts for f in h.fetches if f.kind != "failed"})
    sn = supernode_figures(hosts, rate_mbit_s)
    last = sn.get("last_out_s")
    per_host = sorted((host_figures(h, hosts, pieces, last, ramp_s) for h in hosts),
                      key=lambda r: (r.get("done_s", math.inf), r["name"]))
    gaps = [g for r in per_host for g in r.get("refill_gaps_s", ())]
    return {"hosts": len(hosts), "file_pieces": pieces, "ramp_s": ramp_s, "supernode": sn,
            "per_host": per_host,
            "refill_gap_median_s": median(gaps), "refill_gap_p90_s": p90(gaps), "refill_gaps": len(gaps),
            "relays": relay_figures(hosts), "schedule_calls": call_figures(hosts),
            "last_done_s": max((r.get("done_s", 0.0) for r in per_host), default=0.0)}


def headline(report: dict) -> List[Tuple[str, Optional[float], int]]:
    """The figures two runs are compared by: (label, value, decimals shown)."""
    sn, rel, hosts = report["supernode"], report["relays"], report["per_host"]
    return [("last host done (s)", report["last_done_s"], 2),
            ("supernode: last piece out (s)", sn.get("last_out_s"), 2),
            ("supernode: mean Mbit/s", sn.get("mean_mbit_s"), 1),
            ("hosts: receive Mbit/s, median", median([r["receive_mbit_s"] for r in hosts if r["pieces"]]), 1),
            ("hosts: send Mbit/s, median", median([r["send_mbit_s"] for r in hosts
                                                  if r.get("send_mbit_s") is not None]), 1),
            ("hosts: body receive Mbit/s, median", _median_of(hosts, "body_receive_mbit_s"), 1),
            ("hosts: body send Mbit/s, median", _median_of(hosts, "body_send_mbit_s"), 1),
            ("hosts: tail Mbit/s, median", _median_of(hosts, "tail_mbit_s"), 1),
            ("hosts: tail pieces, median", median([r["tail_pieces"] for r in hosts
                                                  if "tail_pieces" in r]), 1),
            ("hosts: tail s, median", median([r["tail_s"] for r in hosts if "tail_s" in r]), 2),
            ("refill gap median (s)", report["refill_gap_median_s"], 3),
            ("refill gap p90 (s)", report["refill_gap_p90_s"], 3),
            ("schedule call median (s)", report["schedule_calls"]["latency_median_s"], 3),
            ("schedule call p90 (s)", report["schedule_calls"]["latency_p90_s"], 3),
            ("relayed fetches", rel["relayed"]["count"], 0),
            ("relayed fetch median (s)", rel["relayed"]["median_s"], 2),
            ("supernode/whole fetch median (s)", rel["not_relayed"]["median_s"], 2),
            ("relays fed by a relay", rel["chained"], 0)]


def _median_of(hosts: List[dict], key: str) -> Optional[float]:
    return median([r[key] for r in hosts if r.get(key) is not None])


# -- text ----------------------------------------------------------------------------------
def _f(value, fmt: str = "%.2f") -> str:
    return "-" if value is None else fmt % value


def format_report(name: str, report: dict) -> str:
    sn, rel = report["supernode"], report["relays"]
    lines = ["%s: %d hosts, %d pieces; last host done %.2f s after the first registration"
             % (name, report["hosts"], report["file_pieces"], report["last_done_s"])]
    if sn["pieces"]:
        against = ""
        if "of_link_payload" in sn:
            against = " = %.0f %% of the %.1f Mbit/s payload of the link" % (
                100 * sn["of_link_payload"], sn["link_payload_mbit_s"])
        lines.append("supernode: %d pieces, last out at %.2f s; %.1f Mbit/s from its first request "
                     "(%.2f s)%s; %.1f fetches in flight on average, %% of that time with 0, 1, .. in "
                     "flight [%s]"
                     % (sn["pieces"], sn["last_out_s"], sn["mean_mbit_s"], sn["first_request_s"], against,
                        sn["mean_in_flight"], " ".join("%.0f" % (100 * x) for x in sn["in_flight"])))
        lines.append("supernode egress, Mbit/s per %g s (a row a second):" % BIN_S)
        bins = sn["egress_mbit_s"]
        per_row = int(round(1 / BIN_S))
        for i in range(0, len(bins), per_row):
            lines.append("  %5.1f s  %s" % (i * BIN_S, " ".join("%3.0f" % b for b in bins[i:i + per_row])))
    else:
        lines.append("supernode: no piece came from it")
    lines.append("hosts, by when done: registered, first request, done (s); receive / send Mbit/s while\n"
                 "  downloading, and from %g s after its first request until the supernode's last piece\n"
                 "  left (body); %% of its time with 0, 1, .. fetches in flight; tail: pieces lacking when\n"
                 "  the supernode's last piece left, seconds after, Mbit/s received then; refill gap median"
                 % report["ramp_s"])
    lines.extend(_host_line(r) for r in report["per_host"])
    lines.append("slot refill gaps: %d, median %s s, p90 %s s"
                 % (report["refill_gaps"], _f(report["refill_gap_median_s"], "%.3f"),
                    _f(report["refill_gap_p90_s"], "%.3f")))
    calls = report["schedule_calls"]
    lines.append("schedule calls: %d, median %s s, p90 %s s; less the supernode's hold: median %s s, "
                 "p90 %s s; report-only calls: %d, median %s s"
                 % (calls["count"], _f(calls["latency_median_s"], "%.3f"), _f(calls["latency_p90_s"], "%.3f"),
                    _f(calls["own_median_s"], "%.3f"), _f(calls["own_p90_s"], "%.3f"), calls["reports"],
                    _f(calls["report_median_s"], "%.3f")))
    lines.append("fetches: " + "; ".join("%s %d (median %s s, p90 %s s)" % (
        {"whole": "whole copies"}.get(k, k), rel[k]["count"], _f(rel[k]["median_s"]), _f(rel[k]["p90_s"]))
        for k in (SUPERNODE, "whole", "relayed", "failed")))
    if rel["relayed"]["count"]:
        lines.append("relays: %d of %d relayed fetches' relays traced here; %d of those relays were fed by "
                     "a relay (chains); a relayed fetch ends %s s (median; p90 %s s) after its relay's own"
                     % (rel["relays_known"], rel["relayed"]["count"], rel["chained"],
                        _f(rel["lag_median_s"]), _f(rel["lag_p90_s"])))
    return "\n".join(lines)


def _host_line(r: dict) -> str:
    if not r["pieces"]:
        return "  %-8s no piece" % r["name"]
    flight = " ".join("%.0f" % (100 * s) for s in r["in_flight"])
    return ("  %-8s %5.2f %5.2f %5.2f  %5.1f / %5s, body %5s / %5s  in flight %% [%s]%s"
            "  tail %s, %s s at %s  gap %s s"
            % (r["name"], r["registered_s"], r["first_request_s"], r["done_s"], r["receive_mbit_s"],
               _f(r["send_mbit_s"], "%.1f"), _f(r["body_receive_mbit_s"], "%.1f"),
               _f(r["body_send_mbit_s"], "%.1f"), flight, " of %d" % r["parallel"] if r["parallel"] else "",
               _f(r.get("tail_pieces"), "%d"), _f(r.get("tail_s")), _f(r["tail_mbit_s"], "%.1f"),
               _f(median(r["refill_gaps_s"]), "%.3f")))


def format_comparison(names: Tuple[str, str], reports: Tuple[dict, dict]) -> str:
    a, b = (headline(r) for r in reports)
    width = max(len(label) for label, _, _ in a)
    lines = ["A: %s" % names[0], "B: %s" % names[1],
             "%-*s  %10s  %10s  %10s" % (width, "", "A", "B", "B - A")]
    for (label, x, places), (_, y, _) in zip(a, b):
        diff = y - x if x is not None and y is not None else None
        fmt = "%%.%df" % places
        lines.append("%-*s  %10s  %10s  %10s" % (width, label, _f(x, fmt), _f(y, fmt),
                                                   _f(diff, "%+" + fmt[1:])))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="bench/traces.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", metavar="DIR", help="one run's trace files (two: compared)")
    p.add_argument("--rate", type=float, default=0.0, help="the links' rate, Mbit/s (testbed --rate)")
    p.add_argument("--ramp", type=float, default=RAMP_S, metavar="S",
                   help="hosts' body rates start S seconds after their first request (default %(default)s)")
    p.add_argument("--json", action="store_true", help="the figures as JSON instead of text")
    args = p.parse_args(argv)
    if len(args.folders) > 2:
        p.error("one folder, or two to compare")
    reports = []
    for folder in args.folders:
        try:
            traces = load([folder]) if os.path.isdir(folder) else []
            hosts = hosts_from(traces)
        except (OSError, ValueError, KeyError, TypeError) as e:
            sys.stderr.write("traces: cannot read the traces in %s: %s\n" % (folder, e))
            return 2
        if not hosts:
            sys.stderr.write("traces: no trace of a host that registered in %s\n" % folder)
            return 2
        if len(hosts) < len(traces):
            sys.stderr.write("traces: %s: %d of %d hosts never registered, left out\n"
                             % (folder, len(traces) - len(hosts), len(traces)))
        reports.append(analyse(hosts, args.rate, args.ramp))
    if args.json:
        print(json.dumps(dict(zip(args.folders, reports)), indent=1))
        return 0
    print("\n\n".join(format_report(f, r) for f, r in zip(args.folders, reports)))
    if len(reports) == 2:
        print("\n" + format_comparison((args.folders[0], args.folders[1]), (reports[0], reports[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
