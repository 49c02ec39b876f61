"""TCP alone on the testbed's links: every host fetches the file in k ranges from k neighbours.

    sudo python3 bench/tcp_mesh.py                    # 16 hosts, k = 1 and 4, 64 MiB, 100 Mbit/s
    sudo python3 bench/tcp_mesh.py --hosts 3 --ks 1,2 --size 4M

A reference for bench/testbed.py, with no dfly in it: each host already holds
the file behind nginx, and curls k equal ranges of it from its k next
neighbours at once, so every link carries k flows up and k down. k = 1 is the
testbed's ideal ring; k = 4 is the number of flows dfly runs per link (4
downloads, up to 4 uploads). Reported per k (median of --runs, alternating):
the time until every range is in, and when the first, median and last
range ended. Same namespaces, shaping and teardown as bench/testbed.py.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import testbed  # noqa: E402


def one_round(bed: testbed.Testbed, k: int, size: int, timeout_s: float) -> dict:
    """Every host fetches its k ranges at once; the seconds until each range ended."""
    part = size // k
    procs = []
    started = time.perf_counter()
    for i, ns in enumerate(bed.clients):
        for j in range(k):
            source = bed.clients[(i + 1 + j) % len(bed.clients)]
            last = size - 1 if j == k - 1 else (j + 1) * part - 1
            url = "http://%s:%d/file.bin" % (bed.addr[source], testbed.NGINX_PORT)
            procs.append(subprocess.Popen(bed.exec_argv(ns, [harness.CURL, "-sS", "--fail", "-o", "/dev/null",
                                                             "-r", "%d-%d" % (j * part, last), url])))
    ended = {}

    def all_in() -> bool:
        for n, proc in enumerate(procs):
            if n not in ended and proc.poll() is not None:
                if proc.returncode != 0:
                    raise RuntimeError("curl of a range exited with %d" % proc.returncode)
                ended[n] = time.perf_counter() - started
        return len(ended) == len(procs)
    try:
        harness.wait_until(all_in, timeout_s, "%d ranges" % len(procs), step_s=0.005)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    times = sorted(ended.values())
    return {"k": k, "all_in_s": round(times[-1], 3), "first_s": round(times[0], 3),
            "median_s": round(statistics.median(times), 3)}


def main(argv: List[str] = None) -> int:
    p = argparse.ArgumentParser(prog="bench/tcp_mesh.py", description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=16)
    p.add_argument("--ks", default="1,4", help="flows per link to try (default: %(default)s)")
    p.add_argument("--size", type=harness.parse_size, default=64 << 20)
    p.add_argument("--rate", type=float, default=100.0, help="Mbit/s per host, each way")
    p.add_argument("--queue", type=int, default=100, help="packets each link's FIFO holds")
    p.add_argument("--runs", type=int, default=2, help="rounds per k, alternating (default: 2)")
    p.add_argument("--out", help="write the results as JSON here too")
    args = p.parse_args(argv)
    reason = testbed.preflight()
    if reason:
        sys.stderr.write("tcp_mesh: %s\n" % reason)
        return 2
    ks = [int(k) for k in args.ks.split(",") if k.strip()]
    if args.hosts < 2 or not ks or min(ks) < 1 or max(ks) >= args.hosts or args.runs < 1:
        p.error("need --hosts >= 2, each k in 1..hosts-1 and --runs >= 1")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, testbed._raise_exit)
    lower_bound = args.size * 8 / (args.rate * 1e6)
    timeout_s = lower_bound * 10 + 60
    bed = testbed.Testbed(args.hosts, args.rate, args.queue)
    ws = None
    rounds = []
    try:
        # pyz="-": no dfly here, so nothing to build
        ws = harness.Workspace("/dev/shm" if os.path.isdir("/dev/shm") else None, False, pyz="-")
        www = ws.dir("www")
        harness.write_file(os.path.join(www, "file.bin"), args.size)
        bed.build()
        for ns in bed.clients:
            testbed.start_nginx(ws, bed, ns, www)
        for run in range(1, args.runs + 1):
            for k in ks:
                row = dict(one_round(bed, k, args.size, timeout_s), run=run)
                rounds.append(row)
                print("k=%d run %d: every range in after %.2f s (first %.2f s, median %.2f s)"
                      % (k, run, row["all_in_s"], row["first_s"], row["median_s"]), flush=True)
    finally:
        bed.close()
        if ws is not None:
            ws.close()
    summary = []
    for k in ks:
        mine = [r for r in rounds if r["k"] == k]
        summary.append({"k": k, "all_in_s": statistics.median(r["all_in_s"] for r in mine),
                        "runs_all_in_s": [r["all_in_s"] for r in mine]})
        print("k=%d: median %.2f s (%.2fx the lower bound %.2f s)"
              % (k, summary[-1]["all_in_s"], summary[-1]["all_in_s"] / lower_bound, lower_bound))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"hosts": args.hosts, "size": args.size, "rate_mbit": args.rate,
                       "lower_bound_s": round(lower_bound, 3), "rounds": rounds, "summary": summary,
                       "machine": harness.machine(), "clean_after": not testbed.our_namespaces(bed.tag)},
                      f, indent=2)
    return 0 if not testbed.our_namespaces(bed.tag) else 1


if __name__ == "__main__":
    sys.exit(main())
