"""Build dfly.pyz: the dfly package, its bytecode for every Python found, and a __main__.

    python3 build_zipapp.py [-o dfly.pyz] [--python PATH ...]

Bytecode is compiled by each interpreter given with --python, or else by this one
and every CPython 3.8+ found on PATH (python3.N) or in pyenv, into one file per
interpreter (`__bytecode__/<cache tag>`, stored uncompressed); dfly/zipmain.py (the
archive's __main__) loads the one matching the running Python. An interpreter the
build did not see still runs the archive, compiling the sources at each start.
"""
import argparse
import compileall
import glob
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
# Run by each interpreter: its cache tag, after compiling the tree into __pycache__.
# Code objects name their files as inside the archive (dfly.pyz/dfly/cli.py), not the
# temporary build folder, so a traceback in a bug report points at the source.
ARCHIVE_NAME = "dfly.pyz"
COMPILE = ("import compileall, sys\n"
           "if sys.version_info < (3, 8) or sys.implementation.cache_tag is None: sys.exit(3)\n"
           "ok = compileall.compile_dir(sys.argv[1], ddir=sys.argv[2], quiet=1)\n"
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


def compile_for(pythons: List[str], tree: str) -> Tuple[Dict[str, str], List[str]]:
    """Compile `tree` with each interpreter at once: ({cache tag: interpreter} of those
    that did, one per tag, the first listed; the interpreters that could not)."""
    runs, failed = [], []
    for python in pythons:
        try:
            runs.append((python, subprocess.Popen([python, "-S", "-c", COMPILE, tree,
                                                   ARCHIVE_NAME + "/" + os.path.basename(tree)],
                                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)))
        except OSError:
            failed.append(python)
    tags: Dict[str, str] = {}
    for python, proc in runs:
        try:
            out, _ = proc.communicate(timeout=COMPILE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            out = b""
        if proc.returncode == 0 and out.strip():
            tags.setdefault(out.decode().strip(), python)
        else:
            failed.append(python)
    return tags, failed


def bundle_bytecode(tree: str, tag: str, bundle) -> bytes:
    """The __pycache__/*.<tag>.pyc under `tree` (the package folder) as one file,
    made by `bundle` (dfly/zipmain.py's, which reads it back)."""
    package = os.path.basename(tree)
    modules, magics = {}, set()
    for folder, _, files in os.walk(tree):
        if os.path.basename(folder) != "__pycache__":
            continue
        source_folder = os.path.relpath(os.path.dirname(folder), os.path.dirname(tree))
        for name in files:
            stem, _, rest = name.partition(".")
            if rest != tag + ".pyc":
                continue
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
            magics.add(data[:4])
            parts = source_folder.split(os.sep) + ([] if stem == "__init__" else [stem])
            modules[".".join(parts)] = (stem == "__init__", data[16:])   # 16: the pyc header
    if len(magics) != 1 or package not in modules:
        raise RuntimeError("bytecode for %s is incomplete or mixed" % tag)
    return bundle(magics.pop(), modules)


def write_archive(staging: str, target: str) -> None:
    """What zipapp.create_archive does, but with the bytecode bundles stored rather
    than deflated: each start reads one whole, and inflating it cost more than reading."""
    with open(target, "wb") as f:
        f.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(f, "w") as archive:
            for folder, dirs, files in os.walk(staging):
                dirs.sort()
                for name in sorted(files):
                    path = os.path.join(folder, name)
                    arcname = os.path.relpath(path, staging).replace(os.sep, "/")
                    stored = arcname.startswith("__bytecode__/")
                    archive.write(path, arcname, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    os.chmod(target, 0o755)


def build(target: str, pythons: Optional[List[str]] = None) -> str:
    with tempfile.TemporaryDirectory() as staging:
        tree = os.path.join(staging, "dfly")
        shutil.copytree(os.path.join(HERE, "dfly"), tree,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copy(os.path.join(tree, "zipmain.py"), os.path.join(staging, "__main__.py"))
        os.mkdir(os.path.join(staging, "__bytecode__"))
        tags, failed = compile_for(pythons or found_pythons(), tree)
        bundle = runpy.run_path(os.path.join(tree, "zipmain.py"))["bundle"]
        for python in failed if pythons else ():   # asked for by name: say it did not work
            sys.stderr.write("build_zipapp: no bytecode from %s (not a CPython 3.8+, or it failed)\n"
                             % python)
        for tag in tags:
            with open(os.path.join(staging, "__bytecode__", tag), "wb") as f:
                f.write(bundle_bytecode(tree, tag, bundle))
        for folder, dirs, _ in os.walk(tree):
            if "__pycache__" in dirs:
                shutil.rmtree(os.path.join(folder, "__pycache__"))
                dirs.remove("__pycache__")
        # foo.pyc beside foo.py is what zipimport itself reads: for `import dfly` from
        # the archive on sys.path (the SDK), where zipmain's finder is not installed,
        # and __main__.pyc for the archive's start itself, both for this Python.
        compileall.compile_dir(staging, ddir=ARCHIVE_NAME, legacy=True, quiet=1)
        write_archive(staging, target)
    return target


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=os.path.join(HERE, "dfly.pyz"))
    parser.add_argument("--python", action="append", help="an interpreter to compile bytecode for "
                        "(repeatable; default: this one and every CPython 3.8+ found)")
    args = parser.parse_args()
    print(build(args.output, args.python))
