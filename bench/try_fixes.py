"""Build a dfly.pyz with the fixes docs/BENCHMARKS.md proposes, to measure them.

The working tree's dfly/ is copied to a temporary folder, each chosen fix is
applied to the copy as a small text edit, and the copy is built into a zipapp;
dfly/ itself is never touched. Then, for example:

    python3 bench/try_fixes.py -o /tmp/dfly-fixed.pyz
    python3 bench/single.py --pyz /tmp/dfly-fixed.pyz --out /tmp/single-fixed.json

A fix whose anchor text is gone (the code changed, or the fix landed) is
reported and skipped.

Fixes:
  nodelay  httpd.Handler sets TCP_NODELAY, so a small reply's body is not held
           back by Nagle until the client's delayed ACK (~40 ms per request)
  stop     httpd.Listener polls for shutdown every 20 ms, not 200 ms, so
           Client.close() (and so every `dfly get`) does not wait ~0.1 s on average
  geometry the client accepts the real piece size once the supernode learns the
           length, if it holds no piece yet: a cold get of a file over ~1.95 GiB
           (piece size > 4 MiB) otherwise fails with "piece size changed
           mid-download" (a correctness fix, needed to measure those sizes cold)
  pyc      the zipapp carries compiled .pyc files next to the sources, so each
           run does not recompile every module (zipimport cannot cache bytecode)
"""
import argparse
import compileall
import os
import shutil
import sys
import tempfile
import zipapp

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MAIN = "import sys\nfrom dfly.cli import main\nsys.exit(main())\n"

# name -> (file, old text, new text); "pyc" is a build step, not an edit
EDITS = {
    "nodelay": ("dfly/httpd.py",
                '    protocol_version = "HTTP/1.1"\n',
                '    protocol_version = "HTTP/1.1"\n    disable_nagle_algorithm = True\n'),
    "stop": ("dfly/httpd.py", '"poll_interval": 0.2}', '"poll_interval": 0.02}'),
    "geometry": ("dfly/peer/storage.py",
                 "            if self.piece_size and piece_size != self.piece_size:\n",
                 "            if self.piece_size and piece_size != self.piece_size and self.held:\n"),
}
ALL = ["nodelay", "stop", "geometry", "pyc"]


def build(output: str, fixes) -> list:
    applied = []
    with tempfile.TemporaryDirectory(prefix="dfly-fixes-") as staging:
        shutil.copytree(os.path.join(REPO, "dfly"), os.path.join(staging, "dfly"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in fixes:
            if name == "pyc":
                continue
            rel, old, new = EDITS[name]
            path = os.path.join(staging, rel)
            with open(path) as f:
                text = f.read()
            if text.count(old) != 1:
                print("fix %r skipped: its anchor text is not in %s (changed or already fixed?)"
                      % (name, rel))
                continue
            with open(path, "w") as f:
                f.write(text.replace(old, new))
            applied.append(name)
        with open(os.path.join(staging, "__main__.py"), "w") as f:
            f.write(MAIN)
        if "pyc" in fixes:
            # legacy=True puts foo.pyc beside foo.py, the one place zipimport looks;
            # another Python version ignores them (magic number) and compiles as before
            compileall.compile_dir(staging, legacy=True, quiet=1)
            applied.append("pyc")
        zipapp.create_archive(staging, output, interpreter="/usr/bin/env python3", compressed=True)
    return applied


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("-o", "--output", required=True, help="where to write the zipapp")
    p.add_argument("--fixes", default=",".join(ALL), help="comma-separated subset of: " + ",".join(ALL))
    args = p.parse_args()
    fixes = [f for f in args.fixes.split(",") if f]
    unknown = [f for f in fixes if f not in ALL]
    if unknown:
        p.error("unknown fix(es): %s" % ", ".join(unknown))
    applied = build(args.output, fixes)
    print("%s built with: %s" % (args.output, ", ".join(applied) or "no fixes"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
