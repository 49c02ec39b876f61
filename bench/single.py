"""Single: one `dfly get` of a large file from one seed vs `curl -o` from nginx.

Target: dfly's throughput is at least 0.7x curl's on the same file, same run.
The file is fetched once first so the supernode has it cached ("the seed");
then measured rounds alternate `dfly get` (pieces from the supernode's cache)
and `curl -o` (straight from nginx), median of --runs each. With --from-peer
(on by default) a second seed is measured too: a `dfly get --seed-for` whose
detached seeder holds the file, so the measured get takes its pieces from that
peer (the supernode then serves none). Times are whole-process wall clock,
interpreter start included; dfly's own elapsed_s is reported beside it. Dirty
pages are flushed (sync) before each timed run.

With --cold, the cold path instead: each measured get goes through a fresh
supernode (empty cache), which must first fetch the file from nginx, so the
origin -> supernode -> client path is timed whole; runs alternate with curl.

    python3 bench/single.py            # 1 GiB, 3 runs each
    python3 bench/single.py --quick    # 128 MiB, 1 run each
    python3 bench/single.py --cold     # 1 GiB through a fresh supernode each run, vs curl
    python3 bench/single.py --cold --against OLD.pyz   # and an older tree's, alternating
"""
import os
import shutil
import sys

import harness
from harness import MiB

NAME = "single"
TARGET_RATIO = 0.7


def main() -> int:
    p = harness.base_parser(NAME, __doc__)
    p.add_argument("--size", type=harness.parse_size, help="file size (default 1G; quick 128M)")
    p.add_argument("--no-from-peer", dest="from_peer", action="store_false",
                   help="skip the measurement from a seeding peer")
    p.add_argument("--parallel", type=int, help="--parallel for the measured gets (default: dfly's)")
    p.add_argument("--timeout", type=float, default=600, help="bound on one download, seconds")
    p.add_argument("--cold", action="store_true",
                   help="time the cold path: a fresh supernode (empty cache) for every get")
    p.add_argument("--against", metavar="OLD.pyz", help="with --cold: also time this zipapp's "
                   "cold gets, alternating with the measured one's (an A/B of two trees)")
    args = p.parse_args()
    if args.cold:
        return cold_main(args)
    size = args.size or (128 * MiB if args.quick else 1 << 30)
    runs = args.runs or (1 if args.quick else 3)
    extra = ["--parallel", str(args.parallel)] if args.parallel else []

    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        nginx, url, want = harness.served_file(ws, size)
        supernode = harness.Supernode(ws)
        out = ws.path("out", "file.bin")

        def dfly(name, seed_for="0", data_dir="client"):
            harness.settle()
            r = harness.run_timed(ws, harness.get_argv(ws, url, out, supernode.address, ws.dir(data_dir),
                                                       seed_for, extra), name, args.timeout)
            ok = harness.sha256_file(out) == want
            harness.remove(out)
            j = r["json"]
            return {"wall_s": r["wall_s"], "elapsed_s": j["elapsed_s"], "verified": ok,
                    "from_supernode": j["bytes_from_supernode"], "from_peers": j["bytes_from_peers"],
                    "from_source": j["bytes_from_source"]}

        def curl(name):
            harness.settle()
            r = harness.run_timed(ws, harness.curl_argv(url, out), name, args.timeout)
            ok = os.path.getsize(out) == size
            harness.remove(out)
            return {"wall_s": r["wall_s"], "verified": ok}

        warm = dfly("warm")   # the supernode fetches the source once: now it is the seed
        print("warm-up (cold supernode, origin -> supernode -> client): %.2fs" % warm["wall_s"])
        from_supernode, curls = [], []
        for r in range(runs):
            from_supernode.append(dfly("dfly-supernode-%d" % r))
            curls.append(curl("curl-%d" % r))
            print("run %d: dfly from supernode cache %.2fs (elapsed %.2fs)   curl %.2fs" % (
                r, from_supernode[-1]["wall_s"], from_supernode[-1]["elapsed_s"], curls[-1]["wall_s"]))
        from_peer = []
        if args.from_peer:
            dfly("seed", seed_for="600", data_dir="seed")
            seeders = ws.seeders()
            print("seeding peer ready (%d seeder process)" % len(seeders))
            for r in range(runs):
                from_peer.append(dfly("dfly-peer-%d" % r))
                print("run %d: dfly from seeding peer %.2fs (elapsed %.2fs, %s from peers)" % (
                    r, from_peer[-1]["wall_s"], from_peer[-1]["elapsed_s"],
                    harness.human(from_peer[-1]["from_peers"])))
            ws.stop_seeders()
        origin = nginx.body_bytes()
        supernode.stop()
        nginx.stop()

    summary = summarize(size, from_supernode, from_peer, curls, warm)
    summary["origin_body_bytes"] = origin["bytes"]
    print_summary(summary, size, runs)
    harness.save(args, NAME, {"size": size, "runs": runs, "parallel": args.parallel,
                              "summary": summary, "warm": warm, "from_supernode": from_supernode,
                              "from_peer": from_peer, "curl": curls})
    return 0 if summary["all_verified"] else 1


def cold_main(args) -> int:
    """Each run: a fresh supernode fetches the file from nginx while one get takes it
    from the supernode; then curl from nginx. Median of --runs each."""
    size = args.size or (128 * MiB if args.quick else 1 << 30)
    runs = args.runs or (1 if args.quick else 3)
    extra = ["--parallel", str(args.parallel)] if args.parallel else []
    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        nginx, url, want = harness.served_file(ws, size)
        out = ws.path("out", "file.bin")
        colds, olds, curls = [], [], []
        for r in range(runs):
            builds = [(colds, ws.pyz, "")] + ([(olds, args.against, "-against")] if args.against else [])
            for into, pyz, tag in (builds if r % 2 == 0 else builds[::-1]):   # neither always first
                into.append(_cold_get(ws, pyz, url, out, want, "%d%s" % (r, tag), extra, args.timeout,
                                      nginx.proc.pid))
            harness.settle()
            c = harness.run_timed(ws, harness.curl_argv(url, out), "curl-%d" % r, args.timeout,
                                  gnu_time=True)
            curls.append({"wall_s": c["wall_s"], "cpu_s": c.get("cpu_s"),
                          "verified": os.path.getsize(out) == size})
            harness.remove(out)
            for into, name in ((colds, "dfly cold"), (olds, "--against")):
                if into:
                    print("run %d: %s %.2fs (elapsed %.2fs; CPU client %.2fs, supernode %.2fs, nginx "
                          "%.2fs: floor %.2fs; supernode page faults %d)" % (
                              r, name, into[-1]["wall_s"], into[-1]["elapsed_s"],
                              into[-1]["client_cpu_s"] or 0, into[-1]["supernode_cpu_s"],
                              into[-1]["nginx_cpu_s"], into[-1]["floor_s"], into[-1]["supernode_faults"]))
            print("run %d: curl %.2fs" % (r, curls[-1]["wall_s"]))
        origin = nginx.body_bytes()
        nginx.stop()
    med = harness.median
    mb = size / 1e6
    curl_s, cold_s = med([c["wall_s"] for c in curls]), med([d["wall_s"] for d in colds])
    summary = {"curl_wall_s": curl_s, "curl_mb_s": mb / curl_s, "cold_wall_s": cold_s,
               "cold_mb_s": mb / cold_s, "ratio_cold": curl_s / cold_s,
               "cold_client_cpu_s": med([d["client_cpu_s"] or 0 for d in colds]),
               "cold_supernode_cpu_s": med([d["supernode_cpu_s"] for d in colds]),
               "cold_floor_s": med([d["floor_s"] for d in colds]),
               "cold_supernode_faults": med([d["supernode_faults"] for d in colds]),
               "curl_cpu_s": med([c["cpu_s"] or 0 for c in curls]),
               "origin_body_bytes": origin["bytes"], "target_ratio": TARGET_RATIO,
               "all_verified": all(d["verified"] for d in colds + olds + curls),
               "loadavg_at_start": harness.LOADAVG_AT_START}
    summary["target_met"] = summary["ratio_cold"] >= TARGET_RATIO
    if olds:
        old_s = med([d["wall_s"] for d in olds])
        summary.update(against=os.path.abspath(args.against), against_wall_s=old_s,
                       against_ratio_cold=curl_s / old_s,
                       against_client_cpu_s=med([d["client_cpu_s"] or 0 for d in olds]),
                       against_supernode_cpu_s=med([d["supernode_cpu_s"] for d in olds]),
                       against_floor_s=med([d["floor_s"] for d in olds]),
                       against_supernode_faults=med([d["supernode_faults"] for d in olds]))
    print("\nsingle --cold: %s, median of %d (load average at start %.2f)"
          % (harness.human(size), runs, harness.LOADAVG_AT_START))
    print("  curl from nginx:                 %6.2fs  %7.0f MB/s  CPU %.2fs" % (
        curl_s, summary["curl_mb_s"], summary["curl_cpu_s"]))
    print("  dfly cold (origin via supernode): %5.2fs  %7.0f MB/s  ratio %.2f (target >= %.1f): %s"
          % (cold_s, summary["cold_mb_s"], summary["ratio_cold"], TARGET_RATIO,
             "MET" if summary["target_met"] else "MISSED"))
    print("  CPU: client %.2fs, supernode %.2fs; the CPU floor (all three processes' CPU over %d "
          "cores) %.2fs: %.2fx of it" % (summary["cold_client_cpu_s"], summary["cold_supernode_cpu_s"],
                                         os.cpu_count() or 1, summary["cold_floor_s"],
                                         cold_s / summary["cold_floor_s"]))
    if olds:
        print("  --against %s: %.2fs  ratio %.2f  CPU: client %.2fs, supernode %.2fs; floor %.2fs; "
              "supernode page faults %d (this tree: %d)" % (
                  args.against, summary["against_wall_s"], summary["against_ratio_cold"],
                  summary["against_client_cpu_s"], summary["against_supernode_cpu_s"],
                  summary["against_floor_s"], summary["against_supernode_faults"],
                  summary["cold_supernode_faults"]))
    harness.save(args, NAME + "_cold", {"size": size, "runs": runs, "parallel": args.parallel,
                                        "summary": summary, "cold": colds, "against": olds,
                                        "curl": curls})
    return 0 if summary["all_verified"] else 1


def _cold_get(ws, pyz: str, url: str, out: str, want: str, tag: str, extra, timeout_s: float,
              nginx_pid: int) -> dict:
    """One get of `url` through a fresh supernode (both from `pyz`), checked and timed.
    `floor_s`: the CPU the get, the supernode and nginx used, spread over every core:
    no overlap of their work could end sooner."""
    with harness.using_pyz(ws, pyz):
        supernode = harness.Supernode(ws, name="supernode-%s" % tag)
        harness.settle()
        pid = supernode.proc.pid
        sn_cpu, sn_faults = harness.process_cpu_s(pid) or 0.0, harness.process_faults(pid) or 0
        nginx_cpu = harness.tree_cpu_s(nginx_pid)
        got = harness.run_timed(ws, harness.get_argv(ws, url, out, supernode.address,
                                                     ws.dir("client-%s" % tag), "0", extra),
                                "dfly-cold-%s" % tag, timeout_s, gnu_time=True)
        sn_cpu = (harness.process_cpu_s(pid) or 0.0) - sn_cpu
        sn_faults = (harness.process_faults(pid) or 0) - sn_faults
        nginx_cpu = harness.tree_cpu_s(nginx_pid) - nginx_cpu
        supernode.stop()
        shutil.rmtree(supernode.data_dir, ignore_errors=True)   # 1 GiB of cache per run
    floor = ((got.get("cpu_s") or 0) + sn_cpu + nginx_cpu) / (os.cpu_count() or 1)
    cold = {"wall_s": got["wall_s"], "elapsed_s": got["json"]["elapsed_s"],
            "client_cpu_s": got.get("cpu_s"), "supernode_cpu_s": round(sn_cpu, 2),
            "supernode_faults": sn_faults, "nginx_cpu_s": round(nginx_cpu, 2),
            "floor_s": round(floor, 2), "verified": harness.sha256_file(out) == want}
    harness.remove(out)
    return cold


def summarize(size, from_supernode, from_peer, curls, warm) -> dict:
    med = harness.median
    mb = size / 1e6
    curl_s = med([c["wall_s"] for c in curls])
    sn_s = med([d["wall_s"] for d in from_supernode])
    s = {"curl_wall_s": curl_s, "curl_mb_s": mb / curl_s,
         "dfly_supernode_wall_s": sn_s,
         "dfly_supernode_elapsed_s": med([d["elapsed_s"] for d in from_supernode]),
         "dfly_supernode_mb_s": mb / sn_s, "ratio_supernode": curl_s / sn_s,
         "cold_wall_s": warm["wall_s"], "cold_mb_s": mb / warm["wall_s"],
         "all_verified": all(d["verified"] for d in from_supernode + from_peer + curls + [warm])}
    if from_peer:
        p_s = med([d["wall_s"] for d in from_peer])
        s.update(dfly_peer_wall_s=p_s, dfly_peer_elapsed_s=med([d["elapsed_s"] for d in from_peer]),
                 dfly_peer_mb_s=mb / p_s, ratio_peer=curl_s / p_s,
                 peer_bytes_share=med([d["from_peers"] / size for d in from_peer]))
    s["target_ratio"] = TARGET_RATIO
    s["target_met"] = s["ratio_supernode"] >= TARGET_RATIO
    return s


def print_summary(s, size, runs) -> None:
    print("\nsingle: %s, median of %d" % (harness.human(size), runs))
    print("  curl from nginx:              %6.2fs  %7.0f MB/s" % (s["curl_wall_s"], s["curl_mb_s"]))
    print("  dfly from supernode cache:    %6.2fs  %7.0f MB/s  ratio %.2f (target >= %.1f)" % (
        s["dfly_supernode_wall_s"], s["dfly_supernode_mb_s"], s["ratio_supernode"], TARGET_RATIO))
    if "dfly_peer_wall_s" in s:
        print("  dfly from seeding peer:       %6.2fs  %7.0f MB/s  ratio %.2f (%.0f%% of bytes from the peer)"
              % (s["dfly_peer_wall_s"], s["dfly_peer_mb_s"], s["ratio_peer"], 100 * s["peer_bytes_share"]))
    print("  dfly cold (origin via supernode): %.2fs  %.0f MB/s" % (s["cold_wall_s"], s["cold_mb_s"]))
    print("  target (dfly/curl >= %.1f from one seed): %s"
          % (TARGET_RATIO, "MET" if s["target_met"] else "MISSED"))


if __name__ == "__main__":
    sys.exit(main())
