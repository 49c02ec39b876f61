"""Build dfly.pyz: the dfly package, its bytecode for every Python found, and a __main__.

    python3 build_zipapp.py [-o dfly.pyz] [--python PATH ...]

Bytecode is compiled by each interpreter given with --python, or else by this one
and every CPython 3.8+ found on PATH (python3.N) or in pyenv; dfly/zipmain.py (the
archive's __main__) loads the one matching the running Python. An interpreter the
build did not see still runs the archive, compiling the sources at each start.
"""
import argparse
import compileall
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipapp
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
# Run by each interpreter: its cache tag, after compiling the tree into __pycache__.
COMPILE = ("import compileall, sys\n"
           "if sys.version_info < (3, 8) or sys.implementation.cache_tag is None: sys.exit(3)\n"
           "ok = compileall.compile_dir(sys.argv[1], quiet=1)\n"
           "print(sys.implementation.cache_tag)\n"
           "sys.exit(0 if ok else 1)\n")
COMPILE_TIMEOUT_S = 120


def found_pythons() -> List[str]:
    """This interpreter, then python3.N on PATH and pyenv's CPython 3.8 and later."""
    paths = [sys.executable]
    for minor in range(8, 20):
        paths.append(shutil.which("python3.%d" % minor) or "")
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    paths.extend(sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.*", "bin", "python3"))))
    return [p for p in paths if p]


def compile_for(pythons: List[str], tree: str) -> Dict[str, str]:
    """Compile `tree` with each interpreter at once; {cache tag: interpreter} of those
    that did (one per tag: the first listed)."""
    runs = []
    for python in pythons:
        try:
            runs.append((python, subprocess.Popen([python, "-S", "-c", COMPILE, tree],
                                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)))
        except OSError:
            continue
    tags: Dict[str, str] = {}
    for python, proc in runs:
        try:
            out, _ = proc.communicate(timeout=COMPILE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            continue
        if proc.returncode == 0 and out.strip():
            tags.setdefault(out.decode().strip(), python)
    return tags


def build(target: str, pythons: Optional[List[str]] = None) -> str:
    with tempfile.TemporaryDirectory() as staging:
        tree = os.path.join(staging, "dfly")
        shutil.copytree(os.path.join(HERE, "dfly"), tree,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copy(os.path.join(tree, "zipmain.py"), os.path.join(staging, "__main__.py"))
        compile_for(pythons or found_pythons(), tree)
        # foo.pyc beside foo.py is what zipimport itself reads: for `import dfly` from
        # the archive on sys.path (the SDK), where zipmain's finder is not installed.
        compileall.compile_dir(tree, legacy=True, quiet=1)
        zipapp.create_archive(staging, target, interpreter="/usr/bin/env python3", compressed=True)
    return target


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=os.path.join(HERE, "dfly.pyz"))
    parser.add_argument("--python", action="append", help="an interpreter to compile bytecode for "
                        "(repeatable; default: this one and every CPython 3.8+ found)")
    args = parser.parse_args()
    print(build(args.output, args.python))
