"""Metrics: the single get and the 8-get swarm with /metrics (scraped every
second, as Prometheus would) vs the tree before it, alternating; and /metrics
scrape time and size while `dfly bench` drives 1000 simulated peers.

Target: throughput with metrics within noise of the tree before them (the run-
to-run spread of either), both measured in this run on loopback.

"Before" is a zipapp built from `git archive BASE` (--base, default main's
merge-base with HEAD: the tree this branch started from) or --base-pyz; "metrics"
is the working tree's (or --pyz). Single: one `dfly get` of the file from each
variant's supernode cache (each fetched it once first), runs alternating.
Swarm: N concurrent `dfly get --seed-for` through a fresh supernode of each
variant (cold cache), alternating. Scrape: a fresh supernode of this tree, a
1 MiB file (one piece: the load is registering and scheduling, as in
"One supernode, many peers"), `dfly bench --peers 1000 --parallel 2`, and
/metrics fetched every 0.5 s while it runs.

    python3 bench/metrics.py             # 1 GiB single, 8 x 256 MiB swarm, 3 runs; 1000 peers
    python3 bench/metrics.py --quick     # 128 MiB, 8 x 32 MiB, 1 run; 200 peers
"""
import http.client
import os
import subprocess
import sys
import tarfile
import threading
import time

import harness
from harness import MiB

NAME = "metrics"
KINDS = ("before", "metrics")


class Scraper:
    """GET /metrics every `every_s` on its own thread; the times and sizes it saw."""

    def __init__(self, address: str, every_s: float):
        self.address, self.every_s = address, every_s
        self.times_s, self.sizes, self.errors = [], [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        host, port = self.address.rsplit(":", 1)
        while not self._stop.wait(self.every_s):
            began = time.perf_counter()
            try:
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
                conn.request("GET", "/metrics")
                body = conn.getresponse().read()
                conn.close()
            except OSError:
                self.errors += 1
                continue
            self.times_s.append(time.perf_counter() - began)
            self.sizes.append(len(body))

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(15)
        times = sorted(self.times_s)
        return {"scrapes": len(times), "errors": self.errors,
                "p50_ms": round(1000 * harness.median(times), 2) if times else None,
                "max_ms": round(1000 * times[-1], 2) if times else None,
                "max_bytes": max(self.sizes) if self.sizes else None}


def build_before(ws, base: str) -> str:
    """A zipapp of the tree at `base`, built from `git archive` in the workspace."""
    folder = ws.dir("before-src")
    archive = ws.path("before.tar")
    subprocess.run(["git", "-C", harness.REPO, "archive", "-o", archive, base], check=True, timeout=60)
    with tarfile.open(archive) as tar:
        tar.extractall(folder)
    target = ws.path("before.pyz")
    subprocess.run([sys.executable, os.path.join(folder, "build_zipapp.py"), "-o", target], check=True,
                   timeout=120, stdout=subprocess.DEVNULL)
    return target


def main() -> int:
    p = harness.base_parser(NAME, __doc__)
    p.add_argument("--size", type=harness.parse_size, help="single get's file (default 1G; quick 128M)")
    p.add_argument("--swarm-size", type=harness.parse_size, help="swarm's file (default 256M; quick 32M)")
    p.add_argument("--peers", type=int, default=8, help="concurrent gets in the swarm (default 8)")
    p.add_argument("--bench-peers", type=int, help="simulated peers for the scrape (default 1000; quick 200)")
    p.add_argument("--base", help="git revision of the tree before (default: merge-base of main and HEAD)")
    p.add_argument("--base-pyz", help="zipapp of the tree before, instead of building --base")
    p.add_argument("--timeout", type=float, default=600, help="bound on one download, seconds")
    p.add_argument("--only", choices=("single", "swarm", "scrape"), help="run one part only")
    args = p.parse_args()
    size = args.size or (128 * MiB if args.quick else 1 << 30)
    swarm_size = args.swarm_size or (32 * MiB if args.quick else 256 * MiB)
    bench_peers = args.bench_peers or (200 if args.quick else 1000)
    runs = args.runs or (1 if args.quick else 3)
    base = args.base or subprocess.run(["git", "-C", harness.REPO, "merge-base", "main", "HEAD"],
                                       capture_output=True, text=True, check=True).stdout.strip()

    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        pyz = {"before": args.base_pyz or build_before(ws, base), "metrics": ws.pyz}
        www = ws.dir("www")
        harness.write_file(os.path.join(www, "single.bin"), size)
        harness.write_file(os.path.join(www, "swarm.bin"), swarm_size)
        harness.write_file(os.path.join(www, "one.bin"), MiB)
        wants = {n: harness.sha256_file(os.path.join(www, n)) for n in ("single.bin", "swarm.bin")}
        nginx = harness.Nginx(ws, www)
        part = (lambda name: args.only in (None, name))
        single = (run_single(ws, pyz, nginx.url("single.bin"), wants["single.bin"], runs, args)
                  if part("single") else None)
        swarm = (run_swarm(ws, pyz, nginx.url("swarm.bin"), wants["swarm.bin"], runs, args)
                 if part("swarm") else None)
        scrape = run_scrape(ws, nginx.url("one.bin"), bench_peers, args) if part("scrape") else None
        nginx.stop()

    summary = summarize(single, swarm, size, swarm_size, args.peers)
    if scrape is not None:
        summary["scrape_at_%d_peers" % bench_peers] = scrape
    print_summary(summary, size, swarm_size, args.peers, runs, base)
    harness.save(args, NAME, {"size": size, "swarm_size": swarm_size, "peers": args.peers,
                              "runs": runs, "base": base, "summary": summary, "single": single,
                              "swarm": swarm})
    return 0 if summary["all_verified"] else 1


def run_single(ws, pyz, url, want, runs, args) -> dict:
    supernodes, scrapers = {}, {}
    for kind in KINDS:
        with harness.using_pyz(ws, pyz[kind]):
            supernodes[kind] = harness.Supernode(ws, "single-" + kind)
    scrapers["metrics"] = Scraper(supernodes["metrics"].address, 1.0)
    out = ws.path("out", "single.bin")
    gets = {kind: [] for kind in KINDS}

    def get(kind, name):
        harness.settle()
        server_cpu = harness.process_cpu_s(supernodes[kind].proc.pid)
        with harness.using_pyz(ws, pyz[kind]):
            r = harness.run_timed(ws, harness.get_argv(ws, url, out, supernodes[kind].address,
                                                       ws.dir("client-" + kind), "0"),
                                  name, args.timeout, gnu_time=True)
        server_cpu = harness.process_cpu_s(supernodes[kind].proc.pid) - server_cpu
        ok = harness.sha256_file(out) == want
        harness.remove(out)
        return {"wall_s": r["wall_s"], "elapsed_s": r["json"]["elapsed_s"], "verified": ok,
                "cpu_s": r.get("cpu_s"), "supernode_cpu_s": round(server_cpu, 3)}

    for kind in KINDS:
        get(kind, "single-warm-" + kind)
    for r in range(runs):
        order = KINDS if r % 2 == 0 else tuple(reversed(KINDS))
        for kind in order:
            gets[kind].append(get(kind, "single-%s-%d" % (kind, r)))
        print("single run %d: before %.2fs (CPU: client %.2fs, supernode %.2fs)   metrics %.2fs "
              "(CPU: client %.2fs, supernode %.2fs)" % (
                  r, gets["before"][-1]["wall_s"], gets["before"][-1]["cpu_s"] or 0,
                  gets["before"][-1]["supernode_cpu_s"], gets["metrics"][-1]["wall_s"],
                  gets["metrics"][-1]["cpu_s"] or 0, gets["metrics"][-1]["supernode_cpu_s"]))
        sys.stdout.flush()
    gets["scrapes"] = scrapers["metrics"].stop()
    for s in supernodes.values():
        s.stop()
    return gets


def run_swarm(ws, pyz, url, want, runs, args) -> dict:
    out = {kind: [] for kind in KINDS}
    for r in range(runs):
        order = KINDS if r % 2 == 0 else tuple(reversed(KINDS))
        for kind in order:
            out[kind].append(swarm_once(ws, pyz[kind], url, want, args, "%s-%d" % (kind, r),
                                        scrape=kind == "metrics"))
        print("swarm run %d: before %.2fs   metrics %.2fs" % (r, out["before"][-1]["wall_s"],
                                                             out["metrics"][-1]["wall_s"]))
        sys.stdout.flush()
    return out


def swarm_once(ws, pyz, url, want, args, name, scrape: bool) -> dict:
    with harness.using_pyz(ws, pyz):
        supernode = harness.Supernode(ws, "swarm-" + name)
        scraper = Scraper(supernode.address, 1.0) if scrape else None
        out_dir = ws.dir("swarm-out-" + name)
        harness.settle()
        started = time.perf_counter()
        procs = [harness.Timed(ws, harness.get_argv(ws, url, os.path.join(out_dir, "p%d.bin" % i),
                                                    supernode.address,
                                                    ws.dir("swarm-" + name, "p%d" % i), "30"),
                               "swarm-%s-p%d" % (name, i)) for i in range(args.peers)]
        harness.finish_all(procs, args.timeout)
    wall = max(t.ended for t in procs) - started
    scrapes = scraper.stop() if scraper is not None else None
    ws.stop_seeders()
    verified = all(harness.sha256_file(os.path.join(out_dir, "p%d.bin" % i)) == want
                   for i in range(args.peers))
    for i in range(args.peers):
        harness.remove(os.path.join(out_dir, "p%d.bin" % i))
    supernode.stop()
    return {"wall_s": wall, "verified": verified, "scrapes": scrapes}


def run_scrape(ws, url, peers, args) -> dict:
    """/metrics while `dfly bench` drives `peers` simulated peers at a fresh supernode."""
    supernode = harness.Supernode(ws, "scrape", extra=["--max-connections", "8192",
                                                       "--max-connections-per-client", "0"])
    scraper = Scraper(supernode.address, 0.5)
    bench = harness.run_timed(ws, [sys.executable, ws.pyz, "bench", url, "--supernode", supernode.address,
                                   "--peers", str(peers), "--parallel", "2", "--upload-listen",
                                   "127.0.0.1:0", "--advertise", "127.0.0.1", "--json"],
                              "scrape-bench", args.timeout)
    figures = scraper.stop()
    supernode.stop()
    report = bench.get("json") or {}
    figures.update(peers=peers, bench_wall_s=round(bench["wall_s"], 2),
                   bench_ok=report.get("succeeded"), bench_failed=report.get("failed"))
    print("scrape at %d peers: %s" % (peers, figures))
    return figures


def summarize(single, swarm, size, swarm_size, peers) -> dict:
    med = harness.median
    runs = [g for part in (single, swarm) if part for k in KINDS for g in part[k]]
    out = {"all_verified": all(g["verified"] for g in runs)}
    for kind in KINDS:
        if single:
            walls = [g["wall_s"] for g in single[kind]]
            out["single_%s_mb_s" % kind] = round(size / 1e6 / med(walls), 1)
            out["single_%s_wall_s" % kind] = [round(w, 2) for w in walls]
            out["single_%s_cpu_s" % kind] = [(g["cpu_s"], g["supernode_cpu_s"]) for g in single[kind]]
        if swarm:
            swalls = [g["wall_s"] for g in swarm[kind]]
            out["swarm_%s_mb_s" % kind] = round(peers * swarm_size / 1e6 / med(swalls), 1)
            out["swarm_%s_wall_s" % kind] = [round(w, 2) for w in swalls]
    if single:
        out["single_ratio"] = round(out["single_metrics_mb_s"] / out["single_before_mb_s"], 3)
        out["single_scrapes"] = single["scrapes"]
    if swarm:
        out["swarm_ratio"] = round(out["swarm_metrics_mb_s"] / out["swarm_before_mb_s"], 3)
    return out


def print_summary(summary, size, swarm_size, peers, runs, base) -> None:
    print("\nmetrics vs before (%s), median of %d, alternating:" % (base[:9], runs))
    if "single_ratio" in summary:
        print("  single %s: before %.1f MB/s, metrics %.1f MB/s (x%.3f)" % (
            harness.human(size), summary["single_before_mb_s"], summary["single_metrics_mb_s"],
            summary["single_ratio"]))
    if "swarm_ratio" in summary:
        print("  swarm %d x %s: before %.1f MB/s, metrics %.1f MB/s (x%.3f)" % (
            peers, harness.human(swarm_size), summary["swarm_before_mb_s"],
            summary["swarm_metrics_mb_s"], summary["swarm_ratio"]))
    for key, value in summary.items():
        if key.startswith("scrape"):
            print("  %s: %s" % (key, value))


if __name__ == "__main__":
    sys.exit(main())
