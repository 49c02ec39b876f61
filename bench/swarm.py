"""Swarm: N concurrent `dfly get`s of one file through one supernode, vs N curls.

Targets: the origin sends the file once (origin bytes / file size = 1.00) and
the peers, not the supernode, carry most of the copies. Each run starts a fresh
supernode (cold cache) and N `dfly get --seed-for S` processes at the same
instant; the origin is nginx, and origin bytes are summed from its access log
($body_bytes_sent). The baseline, in the same run, is N concurrent
`curl -o` from the same nginx: N copies leave the origin.

    python3 bench/swarm.py            # 8 peers x 256 MiB, 3 runs
    python3 bench/swarm.py --quick    # 8 peers x 32 MiB, 1 run
"""
import os
import sys
import time

import harness
from harness import MiB

NAME = "swarm"


def main() -> int:
    p = harness.base_parser(NAME, __doc__)
    p.add_argument("--size", type=harness.parse_size, help="file size (default 256M; quick 32M)")
    p.add_argument("--peers", type=int, default=8, help="concurrent gets (default 8)")
    p.add_argument("--seed-for", default="30", help="--seed-for given to each get (default 30)")
    p.add_argument("--timeout", type=float, default=600, help="bound on one run, seconds")
    args = p.parse_args()
    size = args.size or (32 * MiB if args.quick else 256 * MiB)
    runs = args.runs or (1 if args.quick else 3)

    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        nginx, url, want = harness.served_file(ws, size)
        dfly_runs, curl_runs = [], []
        for r in range(runs):
            dfly_runs.append(run_dfly(ws, nginx, url, size, want, args, r))
            curl_runs.append(run_curl(ws, nginx, url, size, args, r))
            print_run(r, dfly_runs[-1], curl_runs[-1], size)
        nginx.stop()

    summary = summarize(dfly_runs, curl_runs, size, args.peers)
    print_summary(summary, size, args.peers, runs)
    harness.save(args, NAME, {"size": size, "peers": args.peers, "runs": runs,
                              "seed_for": args.seed_for, "summary": summary,
                              "dfly_runs": dfly_runs, "curl_runs": curl_runs})
    return 0 if summary["all_verified"] else 1


def run_dfly(ws, nginx, url, size, want, args, r) -> dict:
    supernode = harness.Supernode(ws, "supernode-%d" % r)
    mark = nginx.log_mark()
    out_dir = ws.dir("run%d" % r)
    procs = []
    harness.settle()
    cpu = harness.CpuMeter()
    started = time.perf_counter()
    for i in range(args.peers):
        argv = harness.get_argv(ws, url, os.path.join(out_dir, "peer%d.bin" % i), supernode.address,
                                ws.dir("run%d" % r, "peer%d" % i), args.seed_for)
        procs.append(harness.Timed(ws, argv, "swarm-r%d-peer%d" % (r, i)))
    peers = harness.finish_all(procs, args.timeout)
    wall = max(t.ended for t in procs) - started
    cpu = cpu.stop()
    origin = nginx.body_bytes(mark)
    seeders = ws.stop_seeders()
    verified = all(harness.sha256_file(os.path.join(out_dir, "peer%d.bin" % i)) == want
                   for i in range(args.peers))
    supernode_rss = supernode.peak_rss_kib()
    supernode.stop()
    split = [{"peer": i, "wall_s": round(p["wall_s"], 3), "elapsed_s": round(p["json"]["elapsed_s"], 3),
              "from_supernode": p["json"]["bytes_from_supernode"],
              "from_peers": p["json"]["bytes_from_peers"],
              "from_source": p["json"]["bytes_from_source"], "via": p["json"]["via"]}
             for i, p in enumerate(peers)]
    for i in range(args.peers):
        harness.remove(os.path.join(out_dir, "peer%d.bin" % i))
    return {"wall_s": wall, "origin_bytes": origin["bytes"], "origin_requests": origin["requests"],
            "origin_statuses": origin["statuses"], "origin_ratio": origin["bytes"] / size,
            "supernode_egress_ratio": sum(s["from_supernode"] for s in split) / size,
            "peer_share": sum(s["from_peers"] for s in split) / (size * args.peers),
            "seeders_stopped": seeders, "cpu": cpu, "supernode_peak_rss_kib": supernode_rss,
            "verified": verified, "peers": split}


def run_curl(ws, nginx, url, size, args, r) -> dict:
    mark = nginx.log_mark()
    out_dir = ws.dir("curl%d" % r)
    harness.settle()
    cpu = harness.CpuMeter()
    started = time.perf_counter()
    procs = [harness.Timed(ws, harness.curl_argv(url, os.path.join(out_dir, "c%d.bin" % i)),
                           "swarm-r%d-curl%d" % (r, i)) for i in range(args.peers)]
    done = harness.finish_all(procs, args.timeout)
    wall = max(t.ended for t in procs) - started
    cpu = cpu.stop()
    origin = nginx.body_bytes(mark)
    for i in range(args.peers):
        harness.remove(os.path.join(out_dir, "c%d.bin" % i))
    return {"wall_s": wall, "cpu": cpu, "origin_bytes": origin["bytes"],
            "origin_ratio": origin["bytes"] / size,
            "slowest_s": max(d["wall_s"] for d in done)}


def summarize(dfly_runs, curl_runs, size, peers) -> dict:
    med = harness.median
    d_wall = med([r["wall_s"] for r in dfly_runs])
    c_wall = med([r["wall_s"] for r in curl_runs])
    return {
        "origin_ratio": med([r["origin_ratio"] for r in dfly_runs]),
        "origin_ratio_max": max(r["origin_ratio"] for r in dfly_runs),
        "dfly_wall_s": d_wall,
        "curl_wall_s": c_wall,
        "curl_origin_ratio": med([r["origin_ratio"] for r in curl_runs]),
        "dfly_aggregate_mb_s": peers * size / 1e6 / d_wall,
        "curl_aggregate_mb_s": peers * size / 1e6 / c_wall,
        "supernode_egress_ratio": med([r["supernode_egress_ratio"] for r in dfly_runs]),
        "peer_share": med([r["peer_share"] for r in dfly_runs]),
        "dfly_busy_cpu_s": med([r["cpu"].get("busy_cpu_s", float("nan")) for r in dfly_runs]),
        "dfly_busy_fraction": med([r["cpu"].get("busy_fraction") or float("nan") for r in dfly_runs]),
        "curl_busy_cpu_s": med([r["cpu"].get("busy_cpu_s", float("nan")) for r in curl_runs]),
        "curl_busy_fraction": med([r["cpu"].get("busy_fraction") or float("nan") for r in curl_runs]),
        "slowest_peer_s": med([max(p["wall_s"] for p in r["peers"]) for r in dfly_runs]),
        "fastest_peer_s": med([min(p["wall_s"] for p in r["peers"]) for r in dfly_runs]),
        "all_verified": all(r["verified"] for r in dfly_runs),
        "target_origin_ratio": 1.0,
        "target_met": max(r["origin_ratio"] for r in dfly_runs) <= 1.0 + 1e-9
        and all(r["verified"] for r in dfly_runs),
    }


def print_run(r, d, c, size) -> None:
    print("run %d: dfly %.2fs origin %.2fx (supernode egress %.2fx, peers carried %.0f%%) %s | "
          "curl %.2fs origin %.2fx" % (r, d["wall_s"], d["origin_ratio"], d["supernode_egress_ratio"],
                                       100 * d["peer_share"], "verified" if d["verified"] else "CORRUPT",
                                       c["wall_s"], c["origin_ratio"]))
    for s in d["peers"]:
        print("   peer %d: %6.2fs  supernode %-10s peers %-10s source %s" % (
            s["peer"], s["wall_s"], harness.human(s["from_supernode"]), harness.human(s["from_peers"]),
            harness.human(s["from_source"])))
    sys.stdout.flush()


def print_summary(s, size, peers, runs) -> None:
    print("\nswarm: %d peers x %s, median of %d" % (peers, harness.human(size), runs))
    print("  origin bytes / file size: dfly %.2f (target 1.00, worst %.2f)   curl %.2f" % (
        s["origin_ratio"], s["origin_ratio_max"], s["curl_origin_ratio"]))
    print("  wall time: dfly %.2fs (%.0f MB/s aggregate)   curl %.2fs (%.0f MB/s aggregate)" % (
        s["dfly_wall_s"], s["dfly_aggregate_mb_s"], s["curl_wall_s"], s["curl_aggregate_mb_s"]))
    print("  machine CPU while running: dfly %.1f CPU-s (%.0f%% of all cores)   curl %.1f CPU-s (%.0f%%)" % (
        s["dfly_busy_cpu_s"], 100 * s["dfly_busy_fraction"],
        s["curl_busy_cpu_s"], 100 * s["curl_busy_fraction"]))
    print("  supernode egress %.2fx the file; peers carried %.0f%% of all bytes; peer times %.2f..%.2fs"
          % (s["supernode_egress_ratio"], 100 * s["peer_share"], s["fastest_peer_s"], s["slowest_peer_s"]))
    print("  target (origin 1.00x, all verified): %s" % ("MET" if s["target_met"] else "MISSED"))


if __name__ == "__main__":
    sys.exit(main())
