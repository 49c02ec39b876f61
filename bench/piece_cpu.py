"""Per-piece CPU: what moving a piece costs each process, in CPU-seconds, on loopback.

At 16 testbed hosts the 2 vCPUs are the limit, so what a piece costs in CPU is
wall time there. This measures it without the testbed: one supernode (its
cache warmed from nginx once), and `dfly get`s of a 64 MiB file (64 pieces of
1 MiB) that fetch
- "cache": every piece from the supernode's cache;
- "peer": every piece from a seeding peer (an earlier `dfly get --seed-for`,
  whose detached seeder serves), the supernode answering only the schedule and
  report calls;
- "one": a one-piece file (1 MiB) from the cache, the get's fixed cost
  (start-up, registration): (cache - one) / (pieces - 1) is what one more
  piece costs the get.
Measured per process: the fetching get whole (its own rusage: user + system
and context switches, every thread's); the serving process and the supernode
only while the get runs (`perf stat -p`, counting threads started meanwhile
too; without perf, CPU from /proc and no context switches). CPU, not wall
time: the machine is shared, and wall time is its noise. Medians of --runs;
with --against OLD.pyz both zipapps run (each with its own supernode), in
alternating order, run after run. CPU-seconds still move with the rest of the
machine's load (caches, the other vCPU's work), by +-15 % from one run to the
next at a load of 10: with --together the two zipapps' exchanges run at the
same moment, so each pair meets the same load (and each other), and the pairs
are what to compare.

    nice -n 19 python3 bench/piece_cpu.py                       # 5 runs
    nice -n 19 python3 bench/piece_cpu.py --against OLD.pyz     # A/B in one run
    nice -n 19 python3 bench/piece_cpu.py --against OLD.pyz --together --runs 16
    nice -n 19 python3 bench/piece_cpu.py --quick               # 2 runs
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Dict, List

import harness
from harness import MiB

NAME = "piece_cpu"
PERF = shutil.which("perf")
VARIANTS = ("cache", "peer", "one")
PROCESSES = ("get", "server", "supernode")


def main() -> int:
    p = harness.base_parser(NAME, __doc__)
    p.add_argument("--size", type=harness.parse_size, default=64 * MiB, help="file size (default 64M)")
    p.add_argument("--against", metavar="OLD.pyz", help="also measure this zipapp, alternating")
    p.add_argument("--variants", default=",".join(VARIANTS), help="of %s" % ",".join(VARIANTS))
    p.add_argument("--timeout", type=float, default=120, help="bound on one get, seconds")
    p.add_argument("--together", action="store_true",
                   help="with --against: run the two zipapps' exchanges at the same moment (each with "
                        "its own supernode and peer), so both meet the same load from the rest of a "
                        "shared machine; compare them pair by pair")
    args = p.parse_args()
    runs = args.runs or (2 if args.quick else 5)
    variants = [v for v in args.variants.split(",") if v]
    if set(variants) - set(VARIANTS):
        p.error("--variants: one of %s" % ", ".join(VARIANTS))
    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        www = ws.dir("www")
        harness.write_file(os.path.join(www, "file.bin"), args.size)
        harness.write_file(os.path.join(www, "one.bin"), MiB)
        nginx = harness.Nginx(ws, www)
        builds = [Build(ws, "this", ws.pyz, nginx)]
        if args.against:
            builds.append(Build(ws, "against", os.path.abspath(args.against), nginx))
        for b in builds:
            b.warm(args.timeout)
        for r in range(runs):
            if args.together:
                for v in variants:
                    measure_together(builds, v, r, args.timeout)
                continue
            for b in (builds if r % 2 == 0 else builds[::-1]):   # neither always first
                for v in variants:
                    b.results[v].append(b.measure(v, r, args.timeout))
                    print("run %d %-7s %-5s %s" % (r, b.name, v, line(b.results[v][-1])), flush=True)
        for b in builds:
            b.stop()
        nginx.stop()
    pieces = -(-args.size // MiB)
    summary = {b.name: summarize(b.results, pieces) for b in builds}
    print_summary(summary, builds, runs, pieces)
    if args.against:
        summary["pairs"] = pair_ratios(builds[0].results, builds[1].results)
        print_pairs(summary["pairs"])
    harness.save(args, NAME, {"size": args.size, "pieces": pieces, "runs": runs, "perf": bool(PERF),
                              "against": builds[1].pyz if args.against else None, "summary": summary,
                              "runs_each": {b.name: b.results for b in builds}})
    return 0 if all(m["verified"] for b in builds for v in b.results.values() for m in v) else 1


def measure_together(builds, variant: str, run: int, timeout_s: float) -> None:
    """One run of `variant` for every build at once, each on a thread of its own."""
    out: Dict[str, object] = {}

    def one(b):
        try:
            out[b.name] = b.measure(variant, run, timeout_s)
        except Exception as e:   # raised below, once the others are done
            out[b.name] = e

    threads = [threading.Thread(target=one, args=(b,), name="measure-" + b.name) for b in builds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3 * timeout_s)
    for b in builds:
        got = out.get(b.name, RuntimeError("%s: run %d of %s did not finish" % (b.name, run, variant)))
        if isinstance(got, Exception):
            raise got
        b.results[variant].append(got)
        print("run %d %-7s %-5s %s" % (run, b.name, variant, line(got)), flush=True)


class Build:
    """One zipapp under test, with its own supernode (cache warmed once)."""

    def __init__(self, ws: harness.Workspace, name: str, pyz: str, nginx: harness.Nginx):
        self.ws, self.name, self.pyz, self.nginx = ws, name, pyz, nginx
        with harness.using_pyz(ws, pyz):
            self.supernode = harness.Supernode(ws, name="supernode-" + name)
        self.results: Dict[str, List[dict]] = {v: [] for v in VARIANTS}
        self.want = {f: harness.sha256_file(os.path.join(ws.root, "www", f)) for f in ("file.bin", "one.bin")}

    def warm(self, timeout_s: float) -> None:
        for f in ("file.bin", "one.bin"):
            self.get(f, "warm-" + f, "0", [], timeout_s)

    def measure(self, variant: str, run: int, timeout_s: float) -> dict:
        tag = "%s-%s-%d" % (self.name, variant, run)
        if variant != "peer":
            f = "one.bin" if variant == "one" else "file.bin"
            return self.get(f, tag, "0", [self.supernode.proc.pid], timeout_s)
        seed_dir = self.ws.dir("seed-" + tag)
        self.get("file.bin", "seed-" + tag, "600", [], timeout_s, data_dir=seed_dir)
        seeder = self._seeder_pid(seed_dir)
        try:
            return self.get("file.bin", tag, "0", [seeder, self.supernode.proc.pid], timeout_s)
        finally:
            self._stop_seeder(seed_dir, seeder)

    def get(self, name: str, tag: str, seed_for: str, watch: List[int], timeout_s: float,
            data_dir: str = "") -> dict:
        """One `dfly get` of `name`, with the processes in `watch` metered while it runs
        (the first is the one serving the pieces: "server", unless only the supernode)."""
        out = self.ws.path("out", tag + ".bin")
        # As the testbed's hosts run it: -S, the whole-file digest checked, no daemon.
        argv = [sys.executable, "-S", self.pyz, "get", self.nginx.url(name), "-o", out,
                "--supernode", self.supernode.address, "--data-dir", data_dir or self.ws.dir("client-" + tag),
                "--seed-for", seed_for, "--upload-listen", "127.0.0.1:0",
                "--digest", "sha256:" + self.want[name],
                "--no-daemon", "--json"]
        harness.settle()
        meters = [Meter(pid) for pid in watch]
        try:
            got = run_get(argv, self.ws.path("logs", tag + ".stderr"), timeout_s)
        finally:
            figures = [m.stop() for m in meters]
        got["verified"] = harness.sha256_file(out) == self.want[name]
        harness.remove(out)
        names = ["supernode"] if len(watch) == 1 else ["server", "supernode"]
        for who, f in zip(names, figures):
            got.update({"%s_%s" % (who, k): v for k, v in f.items()})
        if len(watch) == 1:   # the supernode served the pieces too
            got.update({"server_%s" % k: v for k, v in figures[0].items()})
        return got

    def _seeder_pid(self, data_dir: str) -> int:
        listing = subprocess.run([sys.executable, self.pyz, "seeders", "--data-dir", data_dir, "--json"],
                                 capture_output=True, text=True, timeout=30).stdout
        m = re.search(r'"pid": (\d+)', listing)
        if not m:
            raise RuntimeError("no seeder runs for %s: %r" % (data_dir, listing[:200]))
        return int(m.group(1))

    def _stop_seeder(self, data_dir: str, pid: int) -> None:
        subprocess.run([sys.executable, self.pyz, "seeders", "--data-dir", data_dir, "--stop"],
                       capture_output=True, timeout=30)
        harness.wait_until(lambda: not os.path.exists("/proc/%d" % pid), 20, "seeder %d to exit" % pid)

    def stop(self) -> None:
        self.supernode.stop()


def run_get(argv: List[str], stderr_path: str, timeout_s: float) -> dict:
    """Run a get to its end; its own CPU and context switches (os.wait4: every thread's,
    the whole process's life) and its --json figures."""
    with open(stderr_path, "wb") as err, tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        watchdog = threading.Timer(timeout_s, proc.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        proc.returncode = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        out.seek(0)
        text = out.read().decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        with open(stderr_path, "rb") as f:
            tail = f.read()[-2000:].decode("latin-1")
        raise RuntimeError("%s exited %d: %s" % (argv[4], proc.returncode, tail))
    j = json.loads(text.splitlines()[-1])
    return {"get_cpu_s": round(usage.ru_utime + usage.ru_stime, 4),
            "get_user_s": round(usage.ru_utime, 4), "get_sys_s": round(usage.ru_stime, 4),
            "get_vcsw": usage.ru_nvcsw, "get_ivcsw": usage.ru_nivcsw,
            "get_csw": usage.ru_nvcsw + usage.ru_nivcsw,
            "from_peers": j["bytes_from_peers"], "from_supernode": j["bytes_from_supernode"]}


class Meter:
    """CPU and context switches of a running process from now until stop(): every
    thread's, those it starts meanwhile too (perf stat -p with a control fifo, so the
    count starts once perf is attached); /proc's CPU ticks as a check."""

    def __init__(self, pid: int):
        self.pid = pid
        self.threads = _threads(pid)
        self.cpu0 = harness.process_cpu_s(pid) or 0.0
        self.perf = None
        if PERF:
            self._start_perf()

    def _start_perf(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="perf-ctl-")
        ctl, ack = os.path.join(self.dir, "ctl"), os.path.join(self.dir, "ack")
        os.mkfifo(ctl)
        os.mkfifo(ack)
        self.ctl, self.ack = os.open(ctl, os.O_RDWR), os.open(ack, os.O_RDWR)   # RDWR: no wait for perf
        argv = [PERF, "stat", "-x", ",", "-e", "task-clock,context-switches", "-D", "-1",
                "--control", "fifo:%s,%s" % (ctl, ack), "-p", str(self.pid)]
        self.perf = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._command(b"enable")

    def _command(self, what: bytes) -> None:
        os.write(self.ctl, what + b"\n")
        watchdog = threading.Timer(10, self.perf.kill)
        watchdog.start()
        try:
            os.read(self.ack, 16)   # perf's "ack"
        finally:
            watchdog.cancel()

    def stop(self) -> dict:
        # The get's connections end with it: let their threads see that and exit (their
        # last switches counted), bounded.
        try:
            harness.wait_until(lambda: _threads(self.pid) <= self.threads, 2, "threads to end")
        except RuntimeError:
            pass
        figures = {"cpu_proc_s": round((harness.process_cpu_s(self.pid) or 0.0) - self.cpu0, 3)}
        if self.perf is None:
            figures["cpu_s"] = figures["cpu_proc_s"]
            return figures
        self._command(b"disable")
        self.perf.send_signal(signal.SIGINT)
        report = self.perf.communicate(timeout=10)[1]
        for fd in (self.ctl, self.ack):
            os.close(fd)
        shutil.rmtree(self.dir, ignore_errors=True)
        for row in report.splitlines():
            cells = row.split(",")
            if len(cells) > 2 and cells[2] == "task-clock":
                figures["cpu_s"] = round(float(cells[0]) / 1000, 4)
            elif len(cells) > 2 and cells[2] == "context-switches":
                figures["csw"] = int(cells[0])
        return figures


def _threads(pid: int) -> int:
    try:
        return len(os.listdir("/proc/%d/task" % pid))
    except OSError:
        return 0


def line(m: dict) -> str:
    get = "get %.3f CPU-s %5d csw (%4d voluntary)" % (m["get_cpu_s"], m["get_csw"], m["get_vcsw"])
    others = " | ".join("%s %.3f CPU-s %5s csw" % (who, m.get(who + "_cpu_s", 0), m.get(who + "_csw", "-"))
                        for who in ("server", "supernode"))
    return "%s | %s | peers %s" % (get, others, harness.human(m["from_peers"]))


def summarize(results: Dict[str, List[dict]], pieces: int) -> dict:
    med = harness.median
    s = {}
    for v, runs in results.items():
        if not runs:
            continue
        keys = [k for k, x in runs[0].items() if isinstance(x, (int, float)) and not isinstance(x, bool)]
        s[v] = {k: med([r[k] for r in runs if k in r]) for k in keys}
        s[v]["verified"] = all(r["verified"] for r in runs)
    if "cache" in s and "one" in s:   # what one more piece costs the get
        more = s["cache"]["get_cpu_s"] - s["one"]["get_cpu_s"]
        s["get_ms_per_piece"] = round(1000 * more / (pieces - 1), 3)
        s["get_csw_per_piece"] = round((s["cache"]["get_csw"] - s["one"]["get_csw"]) / (pieces - 1), 2)
        s["get_vcsw_per_piece"] = round((s["cache"]["get_vcsw"] - s["one"]["get_vcsw"]) / (pieces - 1), 2)
    return s


PAIRED = ("get_cpu_s", "get_vcsw", "server_cpu_s", "server_csw", "supernode_cpu_s", "supernode_csw")


def pair_ratios(this: Dict[str, List[dict]], against: Dict[str, List[dict]]) -> dict:
    """Per variant and figure: the median of this/against over the runs taken as
    pairs (run r of each), and in how many pairs this one was lower."""
    out = {}
    for v, runs in this.items():
        for k in PAIRED:
            pairs = [(a[k], b[k]) for a, b in zip(runs, against.get(v, []))
                     if a.get(k) is not None and b.get(k)]
            if pairs:
                out["%s %s" % (v, k)] = {"median_ratio": round(harness.median([a / b for a, b in pairs]), 3),
                                         "lower": sum(a < b for a, b in pairs), "pairs": len(pairs)}
    return out


def print_pairs(pairs: dict) -> None:
    print("  this / against, run by run (median ratio; pairs where this is lower):")
    for name, p in pairs.items():
        print("    %-26s %.3f  %d of %d" % (name, p["median_ratio"], p["lower"], p["pairs"]))


def print_summary(summary: dict, builds, runs: int, pieces: int) -> None:
    print("\npiece_cpu: %d pieces of 1 MiB, median of %d runs (load average at start %.2f)%s"
          % (pieces, runs, harness.LOADAVG_AT_START, "" if PERF else "; no perf: no context switches"))
    for b in builds:
        s = summary[b.name]
        print("  %s (%s)" % (b.name, b.pyz))
        for v in VARIANTS:
            if v in s:
                print("    %-5s %s" % (v, line(s[v])))
        if "get_ms_per_piece" in s:
            print("    one more piece costs the get %.2f ms of CPU and %.1f context switches (%.1f voluntary)"
                  % (s["get_ms_per_piece"], s["get_csw_per_piece"], s["get_vcsw_per_piece"]))


if __name__ == "__main__":
    sys.exit(main())
