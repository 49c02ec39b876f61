"""Run every benchmark, one after another, and print one line per target.

    python3 bench/run_all.py --quick     # smoke test, about half a minute
    python3 bench/run_all.py             # full sizes: several minutes, ~6 GiB of temp files

Other flags (--pyz, --tmp, --runs) are passed on to each benchmark. Each one
runs as its own process, so one failing does not stop the rest; the exit code
is non-zero if any benchmark failed to run (a missed target is reported, not
an error). Results are in bench/results/*.json.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = ["small", "rss", "single", "swarm"]
TIMEOUT_S = {"small": 300, "rss": 1800, "single": 1800, "swarm": 1800}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, few runs")
    p.add_argument("--only", help="comma-separated subset of: " + ",".join(BENCHMARKS))
    p.add_argument("--pyz", help="measure this dfly.pyz instead of building the working tree")
    p.add_argument("--tmp", help="parent folder for temporary workspaces")
    p.add_argument("--runs", type=int, help="repetitions per measurement")
    p.add_argument("--tag", help="name the results bench/results/NAME[.quick].TAG.json (e.g. with --pyz)")
    args = p.parse_args()
    names = args.only.split(",") if args.only else BENCHMARKS
    extra = ["--quick"] if args.quick else []
    for flag, value in (("--pyz", args.pyz), ("--tmp", args.tmp), ("--runs", args.runs)):
        if value is not None:
            extra += [flag, str(value)]

    lines, failed = [], []
    for name in names:
        if name not in BENCHMARKS:
            p.error("unknown benchmark %r" % name)
        print("=== %s ===" % name, flush=True)
        started, wall_start = time.monotonic(), time.time()
        out = ["--out", result(name, args.quick, args.tag)] if args.tag else []
        try:
            rc = subprocess.run([sys.executable, os.path.join(HERE, name + ".py")] + extra + out,
                                timeout=TIMEOUT_S[name]).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        took = time.monotonic() - started
        path = result(name, args.quick, args.tag)
        fresh = os.path.exists(path) and os.path.getmtime(path) >= wall_start
        if rc != 0:
            failed.append(name)
            note = verdict(name, path) + "  " if fresh else ""
            lines.append("%-7s %sFAILED (exit %s, see its output) after %.0fs" % (name, note, rc, took))
            continue
        lines.append("%-7s %s  (%.0fs)" % (name, verdict(name, path), took))
    print("\n=== summary ===")
    print("\n".join(lines))
    return 1 if failed else 0


def result(name: str, quick: bool, tag: str = "") -> str:
    return os.path.join(HERE, "results", "%s%s%s.json" % (name, ".quick" if quick else "",
                                                         "." + tag if tag else ""))


def verdict(name: str, path: str) -> str:
    with open(path) as f:
        s = json.load(f)["summary"]
    met = "MET   " if s["target_met"] else "MISSED"
    if name == "swarm":
        return "%s origin bytes %.2fx the file (target 1.00); dfly %.2fs vs curl %.2fs" % (
            met, s["origin_ratio"], s["dfly_wall_s"], s["curl_wall_s"])
    if name == "single":
        return "%s dfly/curl throughput %.2f (target >= 0.7): %.0f vs %.0f MB/s" % (
            met, s["ratio_supernode"], s["dfly_supernode_mb_s"], s["curl_mb_s"])
    if name == "rss":
        cold = "; cold get failed at %s bytes" % s["cold_failures"] if s.get("cold_failures") else ""
        return "%s client peak RSS %.1f MiB (target <= 64), growth %.1f MiB across sizes%s" % (
            met, s["peak_kib"] / 1024, s["growth_kib"] / 1024, cold)
    if name == "small":
        return "%s 1 KiB get %.3fs (target < 0.2s); curl %.3fs; in-process %.3fs" % (
            met, s["dfly_get_wall_s"], s["curl_wall_s"], s["inproc_median_s"])
    return ""


if __name__ == "__main__":
    sys.exit(main())
