"""RSS: the `dfly get` client's peak resident memory, at two file sizes.

Target: at most 64 MiB, and flat in the file size (pieces stream through a
small buffer per worker). Peak RSS is the "Maximum resident set size" GNU time
reports for the get process (ru_maxrss from wait4), with --seed-for 0 so no
seeder child is involved. For each size: the first get (cold: the supernode is
still fetching from nginx while the client downloads) and --runs warm gets from
the supernode's cache. Baselines in the same run: the interpreter floor
(`python3 dfly.pyz --version`) and `curl -o` of the same file.

    python3 bench/rss.py                   # 256 MiB and 2 GiB, 3 warm runs each
    python3 bench/rss.py --quick           # 32 MiB and 256 MiB, 1 warm run each
    python3 bench/rss.py --sizes 1G,4G
"""
import os
import subprocess
import sys

import harness

NAME = "rss"
TARGET_KIB = 64 * 1024


def main() -> int:
    p = harness.base_parser(NAME, __doc__)
    p.add_argument("--sizes", help="comma-separated sizes (default 256M,2G; quick 32M,256M)")
    p.add_argument("--timeout", type=float, default=900, help="bound on one download, seconds")
    args = p.parse_args()
    sizes = [harness.parse_size(s)
             for s in (args.sizes or ("32M,256M" if args.quick else "256M,2G")).split(",")]
    runs = args.runs or (1 if args.quick else 3)
    use_gnu = harness.GNU_TIME is not None

    per_size = []
    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        www = ws.dir("www")
        nginx = harness.Nginx(ws, www)
        floor = rss_of(ws, [sys.executable, ws.pyz, "--version"], "floor", args.timeout, use_gnu)
        print("interpreter floor (python3 dfly.pyz --version): %s" % kib(floor))
        for size in sizes:
            name = "file-%d.bin" % size
            harness.write_file(os.path.join(www, name), size)
            supernode = harness.Supernode(ws, "supernode-%d" % size)
            url = nginx.url(name)
            out = ws.path("out", name)
            argv = harness.get_argv(ws, url, out, supernode.address, ws.dir("client"), "0")
            cold, cold_error = None, None
            try:
                cold = rss_of(ws, argv, "cold-%d" % size, args.timeout, use_gnu, out, size)
            except RuntimeError as e:   # reported, not fatal: the warm runs still measure memory
                cold_error = str(e).strip()
                harness.remove(out)
                print("%s: the cold get FAILED: %s" % (harness.human(size), cold_error))
            warm = [rss_of(ws, argv, "warm-%d-%d" % (size, r), args.timeout, use_gnu, out, size)
                    for r in range(runs)]
            curl = rss_of(ws, harness.curl_argv(url, out), "curl-%d" % size, args.timeout, use_gnu, out, size)
            row = {"size": size, "cold_kib": cold, "cold_error": cold_error, "warm_kib": warm,
                   "warm_median_kib": harness.median(warm),
                   "peak_kib": max([c for c in [cold] if c is not None] + warm), "curl_kib": curl,
                   "supernode_peak_kib": supernode.peak_rss_kib()}
            per_size.append(row)
            print("%s: dfly get peak RSS cold %s, warm median %s (max of all %s); curl %s; supernode %s" % (
                harness.human(size), kib(cold), kib(row["warm_median_kib"]), kib(row["peak_kib"]),
                kib(curl), kib(row["supernode_peak_kib"])))
            supernode.stop()
            harness.remove(os.path.join(www, name))
        nginx.stop()

    peak = max(r["peak_kib"] for r in per_size)
    growth = per_size[-1]["peak_kib"] - per_size[0]["peak_kib"]
    flat = abs(growth) <= 8 * 1024   # within 8 MiB across sizes
    cold_failures = [r["size"] for r in per_size if r["cold_error"]]
    summary = {"floor_kib": floor, "peak_kib": peak, "growth_kib": growth, "flat": flat,
               "cold_failures": cold_failures,
               "target_kib": TARGET_KIB, "target_met": peak <= TARGET_KIB and flat,
               "method": "GNU time -v" if use_gnu else "getrusage(RUSAGE_CHILDREN)"}
    print("\nrss: peak %s over %s (target <= %s); growth from smallest to largest %s -> %s; %s" % (
        kib(peak), ", ".join(harness.human(s) for s in sizes), kib(TARGET_KIB), kib(growth),
        "flat" if flat else "NOT flat", "MET" if summary["target_met"] else "MISSED"))
    if cold_failures:
        print("  note: the cold get failed at %s (see cold_error in the JSON)"
              % ", ".join(harness.human(s) for s in cold_failures))
    harness.save(args, NAME, {"sizes": sizes, "runs": runs, "summary": summary, "per_size": per_size})
    return 1 if cold_failures else 0


def rss_of(ws, argv, name, timeout_s, use_gnu, out=None, size=None) -> int:
    """Peak RSS in KiB of one process run; checks and removes `out` if given."""
    harness.settle()
    if use_gnu:
        r = harness.run_timed(ws, argv, name, timeout_s, gnu_time=True)
        value = r["max_rss_kib"]
    else:   # the children's high-water mark only rises, so give each its own process tree
        code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
                "stdout=subprocess.DEVNULL, timeout=%f); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)" % timeout_s)
        done = subprocess.run([sys.executable, "-c", code] + argv, capture_output=True, text=True,
                              timeout=timeout_s + 10, check=True, cwd=ws.root)
        value = int(done.stdout.split()[-1])
    if out is not None:
        got = os.path.getsize(out)
        harness.remove(out)
        if got != size:
            raise RuntimeError("%s wrote %d bytes, expected %d" % (name, got, size))
    return value


def kib(n) -> str:
    return "n/a" if n is None else "%.1f MiB" % (n / 1024.0)


if __name__ == "__main__":
    sys.exit(main())
