"""Idle wake-ups: how often an idle supernode, daemon and seeding `get` wake.

Each wake-up of a sleeping thread is a thread switch (and a turn at the GIL):
an idle process should sleep until there is work or a real deadline (the
supernode's janitor round, 1 s; the daemon's heartbeat, 10 s; the seeder's
heartbeat, 5 s). Counted here is every context switch (voluntary +
involuntary, summed over /proc/PID/task/*/status; threads alive at both ends
of the window) of each process over a window, once the three have settled: a 64 KiB file
served by nginx, fetched by one `get --seed-for 5m` (whose detached seeder
stays), with a daemon beside them; all three against the same supernode, so
its figure includes answering their heartbeats (each heartbeat is a few
switches on both sides: connect, send, receive).

    python3 bench/idle.py                        # 15 s window, this tree
    python3 bench/idle.py --against OLD.pyz     # and the same for OLD.pyz, after it
    python3 bench/idle.py --quick               # 5 s window
"""
import json
import os
import subprocess
import sys
import threading
from typing import Dict, List

import harness

NAME = "idle"
SETTLE_S = 3.0   # start-up work (the scrubs' first pass, first heartbeats) ends well within this


def main() -> int:
    p = harness.base_parser(NAME, __doc__)
    p.add_argument("--against", metavar="OLD.pyz", help="also measure this zipapp (the baseline)")
    p.add_argument("--seconds", type=float, help="the counting window (default 15; quick 5)")
    args = p.parse_args()
    window_s = args.seconds or (5.0 if args.quick else 15.0)
    figures = {}
    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        nginx, url, _ = harness.served_file(ws, 64 << 10)
        builds = [("this", ws.pyz)] + ([("against", os.path.abspath(args.against))] if args.against else [])
        for label, pyz in builds:
            with harness.using_pyz(ws, pyz):
                figures[label] = measure(ws, label, url, window_s)
        nginx.stop()
    print("\nidle wake-ups per second (context switches over %.0f s, all threads):" % window_s)
    print("%-14s %10s%s" % ("process", "this", " %10s" % "against" if args.against else ""))
    for process in ("supernode", "daemon", "seeding get"):
        row = "%-14s %10.2f" % (process, figures["this"][process]["per_s"])
        if args.against:
            row += " %10.2f" % figures["against"][process]["per_s"]
        print(row)
    harness.save(args, NAME, {"window_s": window_s, "against": args.against, "figures": figures})
    return 0


def measure(ws: harness.Workspace, label: str, url: str, window_s: float) -> Dict[str, dict]:
    """Start the three, let them settle, count; stop them."""
    supernode = harness.Supernode(ws, "supernode-" + label)
    daemon = harness.Daemon(ws, "daemon-" + label, supernode.address)
    out, client_dir = ws.path("out", label + ".bin"), ws.dir("client-" + label)
    harness.run_timed(ws, harness.get_argv(ws, url, out, supernode.address, client_dir, seed_for="5m"),
                      "get-" + label, 60)
    pids = {"supernode": supernode.proc.pid, "daemon": daemon.proc.pid,
            "seeding get": seeder_pid(ws, client_dir)}
    threading.Event().wait(SETTLE_S)   # a measurement window, not synchronisation
    before = {name: switches(pid) for name, pid in pids.items()}
    threading.Event().wait(window_s)
    after = {name: switches(pid) for name, pid in pids.items()}
    figures = {}
    for name in pids:
        per_thread = sorted((after[name][tid] - before[name].get(tid, 0)) for tid in after[name])
        total = sum(per_thread)
        figures[name] = {"per_s": round(total / window_s, 2), "switches": total,
                         "threads": len(per_thread), "threads_woken": sum(1 for n in per_thread if n)}
        print("%s: %s %.2f/s (%d switches in %.0f s; %d of %d threads woke)" % (
            label, name, total / window_s, total, window_s, figures[name]["threads_woken"],
            len(per_thread)))
    subprocess.run(seeders_argv(ws, client_dir) + ["--stop"], stdout=subprocess.DEVNULL, timeout=30,
                   check=True)
    daemon.stop()
    supernode.stop()
    return figures


def seeders_argv(ws: harness.Workspace, client_dir: str) -> List[str]:
    return [sys.executable, ws.pyz, "seeders", "--data-dir", client_dir]


def seeder_pid(ws: harness.Workspace, client_dir: str) -> int:
    """The get's detached seeder (forked at its start, so `ws.seeders()` does not see it)."""
    listing = subprocess.run(seeders_argv(ws, client_dir) + ["--json"], capture_output=True, text=True,
                             timeout=30, check=True)
    return json.loads(listing.stdout)["pid"]


def switches(pid: int) -> Dict[int, int]:
    """{thread id: context switches so far} of a live process."""
    counts = {}
    for tid in _tids(pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:   # the thread ended
            continue
        counts[int(tid)] = (int(fields["voluntary_ctxt_switches"])
                            + int(fields["nonvoluntary_ctxt_switches"]))
    return counts


def _tids(pid: int) -> List[str]:
    try:
        return os.listdir("/proc/%d/task" % pid)
    except OSError:
        raise RuntimeError("process %d is gone" % pid)


if __name__ == "__main__":
    sys.exit(main())
