"""Start-up on every Python here: the archive's bytecode for each interpreter, against one
holding only the build interpreter's (the layout before: the others compile the sources).

Each interpreter runs `python3 -S dfly.pyz get --help` (every import a `get` makes,
and its flag parser, no network) from both archives, alternating; reported are the
medians of the child's CPU time (user + system) and wall time, and their ratio.

    python3 bench/startup.py            # 21 runs per interpreter and archive
    python3 bench/startup.py --quick    # 5
"""
import os
import subprocess
import sys
import threading
import time

import harness

NAME = "startup"


def measure(argv):
    """(CPU seconds, wall seconds) of one run of `argv`. os.wait4, not subprocess's
    wait with a timeout: that one polls, in sleeps of up to 50 ms."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        watchdog.cancel()
    wall = time.perf_counter() - started
    proc.returncode = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    if proc.returncode != 0:
        raise RuntimeError("%s exited with %d" % (" ".join(argv), proc.returncode))
    return usage.ru_utime + usage.ru_stime, wall


def versions(pythons):
    """{"3.N": interpreter} for the distinct CPython 3.8+ versions among `pythons`."""
    found = {}
    for python in pythons:
        try:
            out = subprocess.run([python, "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        version = out.stdout.strip()
        if out.returncode == 0 and tuple(map(int, version.split("."))) >= (3, 8):
            found.setdefault(version, python)
    return dict(sorted(found.items(), key=lambda kv: tuple(map(int, kv[0].split(".")))))


def main() -> int:
    p = harness.base_parser(NAME, __doc__)
    args = p.parse_args()
    runs = args.runs or (5 if args.quick else 21)
    sys.path.insert(0, harness.REPO)
    from build_zipapp import build, found_pythons
    pythons = versions(found_pythons())
    rows = []
    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        every = ws.pyz   # built from the working tree (or --pyz): bytecode for each Python found
        one = build(ws.path("one", "dfly.pyz"), [sys.executable])
        print("%d runs each of `python3 -S dfly.pyz get --help`; medians" % runs)
        print("%-7s %28s %28s %7s" % ("python", "CPU ms: build's only / each", "wall ms: build's only / each",
                                      "CPU x"))
        for version, python in pythons.items():
            got = {"one": [], "every": []}
            for _ in range(runs):
                for name, pyz in (("one", one), ("every", every)):
                    got[name].append(measure([python, "-S", pyz, "get", "--help"]))
            row = {"python": version, "interpreter": python}
            for name in got:
                row[name + "_cpu_ms"] = round(1000 * harness.median([c for c, _ in got[name]]), 1)
                row[name + "_wall_ms"] = round(1000 * harness.median([w for _, w in got[name]]), 1)
            row["cpu_ratio"] = round(row["every_cpu_ms"] / row["one_cpu_ms"], 3)
            rows.append(row)
            print("%-7s %13.1f / %-12.1f %13.1f / %-12.1f %7.2f" % (
                version, row["one_cpu_ms"], row["every_cpu_ms"], row["one_wall_ms"], row["every_wall_ms"],
                row["cpu_ratio"]))
    harness.save(args, NAME, {"runs": runs, "build_python": "%d.%d" % sys.version_info[:2], "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
