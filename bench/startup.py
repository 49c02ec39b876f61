"""Start-up on every Python here: the archive's bytecode for each interpreter, against the
layout before (a plain zipapp with this interpreter's pyc beside the sources).

Each interpreter runs `python3 -S dfly.pyz get --help` (every import a `get` makes,
and its flag parser, no network) from both archives, alternating; reported are the
medians of the child's CPU time (user + system) and wall time, and their ratio.

    python3 bench/startup.py            # 21 runs per interpreter and archive
    python3 bench/startup.py --quick    # 5
    python3 bench/startup.py --quick --real-get   # a whole `get` of a 1 KiB file:// source

`get --help` stops after the parser: since `dfly` imports its client on first
use, it no longer loads the download's modules. `--real-get` times a whole
`get --no-daemon` of a local 1 KiB file (a file:// source, no supernode, no
network), which makes every import a download does.
"""
import compileall
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipapp

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


def old_layout(target):
    """dfly.pyz as build_zipapp.py made it before: foo.pyc (this Python's) beside each
    foo.py, deflated; every other version compiles the sources at each start."""
    with tempfile.TemporaryDirectory() as staging:
        shutil.copytree(os.path.join(harness.REPO, "dfly"), os.path.join(staging, "dfly"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        with open(os.path.join(staging, "__main__.py"), "w") as f:
            f.write("import sys\nfrom dfly.cli import main\nsys.exit(main())\n")
        compileall.compile_dir(os.path.join(staging, "dfly"), legacy=True, quiet=1)
        zipapp.create_archive(staging, target, interpreter="/usr/bin/env python3", compressed=True)
    return target


def get_command(ws):
    """A whole `get` that touches no network: a file:// source, no supernode, no daemon."""
    www = ws.dir("www")
    harness.write_file(os.path.join(www, "small.bin"), 1024)
    return ["get", "file://" + os.path.join(www, "small.bin"), "-o", ws.path("got.bin"), "--no-daemon",
            "--source-file-root", www, "--data-dir", ws.dir("client")]


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
    p.add_argument("--real-get", action="store_true", help="time a whole get of a local 1 KiB file")
    args = p.parse_args()
    runs = args.runs or (5 if args.quick else 21)
    sys.path.insert(0, harness.REPO)
    from build_zipapp import found_pythons
    pythons = versions(found_pythons())
    rows = []
    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        now = ws.pyz   # built from the working tree (or --pyz): bytecode for each Python found
        before = old_layout(ws.path("before", "dfly.pyz"))
        command = get_command(ws) if args.real_get else ["get", "--help"]
        print("%d runs each of `python3 -S dfly.pyz %s`; medians" % (runs, " ".join(command)))
        print("%-7s %28s %28s %7s" % ("python", "CPU ms: before / now", "wall ms: before / now", "CPU x"))
        for version, python in pythons.items():
            got = {"before": [], "now": []}
            for run in range(runs):
                pair = (("before", before), ("now", now))
                for name, pyz in pair if run % 2 else reversed(pair):   # neither always first
                    got[name].append(measure([python, "-S", pyz] + command))
                    harness.remove(ws.path("got.bin"))
            row = {"python": version, "interpreter": python}
            for name in got:
                row[name + "_cpu_ms"] = round(1000 * harness.median([c for c, _ in got[name]]), 1)
                row[name + "_wall_ms"] = round(1000 * harness.median([w for _, w in got[name]]), 1)
            row["cpu_ratio"] = round(row["now_cpu_ms"] / row["before_cpu_ms"], 3)
            rows.append(row)
            print("%-7s %13.1f / %-12.1f %13.1f / %-12.1f %7.2f" % (
                version, row["before_cpu_ms"], row["now_cpu_ms"], row["before_wall_ms"], row["now_wall_ms"],
                row["cpu_ratio"]))
    harness.save(args, NAME, {"command": command, "runs": runs,
                              "build_python": "%d.%d" % sys.version_info[:2], "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
