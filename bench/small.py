"""Small: a 1 KiB file end to end, where fixed costs are all there is.

Target: `python3 dfly.pyz get` of a 1 KiB file in under 0.2 s (wall clock of
the whole process, supernode already holding the file). Every interpreter runs
as `python3 -S`, as a bare host's would: without this machine's site-packages,
whose .pth files import more at every start. Same run, same file:
`curl -o` from nginx is the baseline, and `python3 dfly.pyz --version` shows
what interpreter start and the zipapp's imports cost before any network (and `python3 -c pass`
the bare interpreter). Since
start-up dominates, the in-process `dfly.Client.download` time is measured too
(one Client, --inproc-runs downloads), split into the first call (which also
starts the uploader) and the rest.

    python3 bench/small.py            # 5 process runs, 20 in-process
    python3 bench/small.py --quick    # 3 process runs, 5 in-process
"""
import os
import sys
import time

import harness

NAME = "small"
TARGET_S = 0.2


def main() -> int:
    p = harness.base_parser(NAME, __doc__)
    p.add_argument("--size", type=harness.parse_size, default=1024, help="file size (default 1K)")
    p.add_argument("--inproc-runs", type=int, help="in-process downloads (default 20; quick 5)")
    p.add_argument("--timeout", type=float, default=60, help="bound on one download, seconds")
    args = p.parse_args()
    runs = args.runs or (3 if args.quick else 5)
    inproc_runs = args.inproc_runs or (5 if args.quick else 20)

    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        www = ws.dir("www")
        harness.write_file(os.path.join(www, "small.bin"), args.size)
        nginx = harness.Nginx(ws, www)
        supernode = harness.Supernode(ws)
        url = nginx.url("small.bin")
        out = ws.path("out", "small.bin")
        # `python3 -S`, as in bench/testbed.py: a bare host's interpreter, without this
        # machine's site-packages (its .pth files import certifi and more at every start).
        bare_python = [sys.executable, "-S"]
        argv = bare_python + harness.get_argv(ws, url, out, supernode.address, ws.dir("client"), "0")[1:]

        def timed(name, cmd, writes=True):
            r = harness.run_timed(ws, cmd, name, args.timeout)
            if writes:
                if os.path.getsize(out) != args.size:
                    raise RuntimeError("%s wrote a wrong size" % name)
                harness.remove(out)
            return r

        version_argv = bare_python + [ws.pyz, "--version"]
        cold = timed("cold", argv)   # the supernode fetches the source during this one
        dfly, curl, version, bare = [], [], [], []
        for r in range(runs):
            d = timed("dfly-%d" % r, argv)
            dfly.append({"wall_s": d["wall_s"], "elapsed_s": d["json"]["elapsed_s"]})
            curl.append(timed("curl-%d" % r, harness.curl_argv(url, out))["wall_s"])
            version.append(timed("version-%d" % r, version_argv, False)["wall_s"])
            bare.append(timed("bare-%d" % r, bare_python + ["-c", "pass"], False)["wall_s"])
            print("run %d: dfly get %.3fs (download %.3fs)   curl %.3fs   dfly --version %.3fs   "
                  "python3 -c pass %.3fs" % (r, dfly[-1]["wall_s"], dfly[-1]["elapsed_s"], curl[-1],
                                             version[-1], bare[-1]))
        inproc = in_process(ws, supernode.address, url, args.size, inproc_runs)
        supernode.stop()
        nginx.stop()

    med = harness.median
    summary = {
        "dfly_get_wall_s": med([d["wall_s"] for d in dfly]),
        "dfly_get_elapsed_s": med([d["elapsed_s"] for d in dfly]),
        "cold_wall_s": cold["wall_s"], "cold_elapsed_s": cold["json"]["elapsed_s"],
        "curl_wall_s": med(curl),
        "interpreter_and_imports_s": med(version),
        "bare_interpreter_s": med(bare),
        "inproc_first_s": inproc[0],
        "inproc_median_s": med(inproc[1:]) if len(inproc) > 1 else inproc[0],
        "inproc_min_s": min(inproc[1:]) if len(inproc) > 1 else inproc[0],
        "target_s": TARGET_S,
    }
    summary["target_met"] = summary["dfly_get_wall_s"] < TARGET_S
    print("\nsmall: %d-byte file, median of %d process runs and %d in-process downloads" % (
        args.size, runs, len(inproc)))
    print("  dfly get (whole process):      %.3fs  (its own download time %.3fs; target < %.1fs: %s)" % (
        summary["dfly_get_wall_s"], summary["dfly_get_elapsed_s"], TARGET_S,
        "MET" if summary["target_met"] else "MISSED"))
    print("  curl -o from nginx:            %.3fs" % summary["curl_wall_s"])
    print("  python3 -S dfly.pyz --version: %.3fs  (interpreter start + imports, no network)" %
          summary["interpreter_and_imports_s"])
    print("  python3 -S -c pass:            %.3fs  (bare interpreter start)" % summary["bare_interpreter_s"])
    print("  Client.download in-process:    first %.3fs, then median %.3fs (min %.3fs)" % (
        summary["inproc_first_s"], summary["inproc_median_s"], summary["inproc_min_s"]))
    print("  cold (supernode fetching from nginx): %.3fs" % summary["cold_wall_s"])
    harness.save(args, NAME, {"size": args.size, "runs": runs, "inproc_runs": inproc_runs,
                              "summary": summary, "dfly": dfly, "curl": curl, "version": version,
                              "bare": bare, "inproc_s": inproc, "cold": cold})
    return 0


def in_process(ws, supernode: str, url: str, size: int, runs: int):
    """Seconds per Client.download, one Client for all (its first call starts the uploader)."""
    sys.path.insert(0, ws.pyz)
    try:
        from dfly.client import Client
    finally:
        sys.path.remove(ws.pyz)
    out = ws.path("out", "inproc.bin")
    times = []
    with Client([supernode], data_dir=ws.dir("inproc"), upload_listen="127.0.0.1:0",
                timeout_s=30) as client:
        for _ in range(runs):
            started = time.perf_counter()
            result = client.download(url, out)
            times.append(time.perf_counter() - started)
            if result.length != size:
                raise RuntimeError("in-process download got %d bytes" % result.length)
            harness.remove(out)
    return times


if __name__ == "__main__":
    sys.exit(main())
