"""Export/import: throughput and peak RSS of `dfly export` and `dfly import`.

A file of each size on nginx, one `dfly supernode`; for each size: `dfly get`
once so the supernode holds it (the export then measures dfly, not nginx),
`dfly export URL --supernode` to an archive (and again cut into parts of
--part-size), then `dfly import` of that archive into a fresh supernode data
dir and into a fresh daemon data dir. Every run is its own process under GNU
time (peak RSS from wait4); MB/s is the file size over the wall time. Target:
peak RSS flat in the size (within 8 MiB from the smallest to the largest).

    python3 bench/export.py                  # 256 MiB and 1 GiB
    python3 bench/export.py --quick          # 32 MiB and 128 MiB
    python3 bench/export.py --sizes 4G --part-size 1G
"""
import os
import shutil
import sys

import harness

NAME = "export"


def main() -> int:
    p = harness.base_parser(NAME, __doc__)
    p.add_argument("--sizes", help="comma-separated sizes (default 256M,1G; quick 32M,128M)")
    p.add_argument("--part-size", default="100M", help="part size of the split export (default 100M)")
    p.add_argument("--timeout", type=float, default=900, help="bound on one command, seconds")
    args = p.parse_args()
    sizes = [harness.parse_size(s)
             for s in (args.sizes or ("32M,128M" if args.quick else "256M,1G")).split(",")]
    rows = []
    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        www = ws.dir("www")
        nginx = harness.Nginx(ws, www)
        supernode = harness.Supernode(ws, "supernode")
        try:
            for size in sizes:
                rows.append(one_size(ws, nginx, supernode, www, size, args))
        finally:
            supernode.stop()
            nginx.stop()
    peaks = [max(r[k]["max_rss_kib"] for k in ("export", "export_parts", "import_supernode",
                                               "import_daemon")) for r in rows]
    growth = peaks[-1] - peaks[0]
    summary = {"peak_rss_kib": max(peaks), "growth_kib": growth, "flat": abs(growth) <= 8 * 1024}
    print("\nexport: peak RSS %.1f MiB over %s; growth %.1f MiB: %s" % (
        summary["peak_rss_kib"] / 1024.0, ", ".join(harness.human(s) for s in sizes), growth / 1024.0,
        "flat" if summary["flat"] else "NOT flat"))
    harness.save(args, NAME, {"sizes": sizes, "part_size": args.part_size, "rows": rows,
                              "summary": summary})
    return 0


def one_size(ws, nginx, supernode, www, size: int, args) -> dict:
    name = "file-%d.bin" % size
    harness.write_file(os.path.join(www, name), size)
    url = nginx.url(name)
    warm = ws.path("out", name)
    harness.run_timed(ws, harness.get_argv(ws, url, warm, supernode.address, ws.dir("getter")),
                      "warm-%d" % size, args.timeout)
    harness.remove(warm)
    dfly = [sys.executable, ws.pyz]
    archive = ws.path("archives", "%d.tar" % size)
    row = {"size": size}
    row["export"] = timed(ws, dfly + ["export", url, "-o", archive, "--supernode", supernode.address,
                                      "--data-dir", ws.dir("exporter"), "--upload-listen",
                                      "127.0.0.1:0", "-q"], "export-%d" % size, size, args)
    row["export_parts"] = timed(ws, dfly + ["export", url, "-o", archive + "-parts", "--part-size",
                                            args.part_size, "--supernode", supernode.address,
                                            "--data-dir", ws.dir("exporter"), "--upload-listen",
                                            "127.0.0.1:0", "-q"], "export-parts-%d" % size, size, args)
    row["import_supernode"] = timed(ws, dfly + ["import", archive, "--data-dir",
                                                ws.dir("import-sn-%d" % size), "--into", "supernode",
                                                "-q"], "import-sn-%d" % size, size, args)
    row["import_daemon"] = timed(ws, dfly + ["import", archive + "-parts.000", "--data-dir",
                                             ws.dir("import-daemon-%d" % size), "--into", "daemon",
                                             "-q"], "import-daemon-%d" % size, size, args)
    for path in [archive] + [os.path.join(os.path.dirname(archive), n)
                             for n in os.listdir(os.path.dirname(archive)) if n.startswith(
                                 os.path.basename(archive) + "-parts.")]:
        harness.remove(path)
    for folder in ("import-sn-%d" % size, "import-daemon-%d" % size):
        shutil.rmtree(ws.path(folder), ignore_errors=True)
    harness.remove(os.path.join(www, name))
    print("%s: export %s, in parts %s; import into a supernode %s, into a daemon %s" % (
        harness.human(size), shown(row["export"]), shown(row["export_parts"]),
        shown(row["import_supernode"]), shown(row["import_daemon"])))
    return row


def timed(ws, argv, name: str, size: int, args) -> dict:
    harness.settle()
    r = harness.run_timed(ws, argv, name, args.timeout, gnu_time=True)
    return {"wall_s": r["wall_s"], "mb_per_s": size / r["wall_s"] / 1e6,
            "max_rss_kib": r.get("max_rss_kib")}


def shown(r: dict) -> str:
    return "%.0f MB/s, peak RSS %.1f MiB" % (r["mb_per_s"], (r["max_rss_kib"] or 0) / 1024.0)


if __name__ == "__main__":
    sys.exit(main())
