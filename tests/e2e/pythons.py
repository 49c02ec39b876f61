"""Which CPython 3.8-3.13 this machine has, and which of them the e2e tier ran
the zipapp on (tests/e2e/conftest.py prints it, and under CI=true fails the run
when one the machine has was not run).

An interpreter counts when it answers with its version: pyenv's builds, then
python3.N on PATH (a pyenv shim for a version not installed does not answer).
"""
import glob
import os
import shutil
import subprocess
import sys
from typing import Dict, List

MINORS = range(8, 14)
RAN: Dict[str, str] = {}   # version -> interpreter, filled by the tests that ran the zipapp


def _candidates(minor: int) -> List[str]:
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    paths = sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.%d.*" % minor, "bin", "python")))
    return paths[::-1] + [shutil.which("python3.%d" % minor) or ""]


def _answers_as(python: str, version: str) -> bool:
    try:
        out = subprocess.run([python, "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def find() -> Dict[str, str]:
    """{"3.N": interpreter} for each CPython 3.8-3.13 here; at least this one."""
    found = {}
    for minor in MINORS:
        version = "3.%d" % minor
        python = next((p for p in _candidates(minor) if p and _answers_as(p, version)), None)
        if python:
            found[version] = python
    found.setdefault("%d.%d" % sys.version_info[:2], sys.executable)
    return found


FOUND = find()


def ran_on(version: str) -> None:
    """The zipapp ran (and did its job) on this version."""
    RAN[version] = FOUND[version]


def summary() -> List[str]:
    ran = sorted(RAN.items(), key=lambda kv: _minor(kv[0]))
    lines = ["zipapp ran on Python " + (", ".join("%s (%s)" % kv for kv in ran) or "none")]
    missing = missed()
    if missing:
        lines.append("this machine has, but the zipapp did not run on: " + ", ".join(missing))
    absent = ["3.%d" % m for m in MINORS if "3.%d" % m not in FOUND]
    if absent:
        lines.append("not on this machine: " + ", ".join(absent))
    return lines


def missed() -> List[str]:
    return sorted((v for v in FOUND if v not in RAN), key=_minor)


def _minor(version: str) -> int:
    return int(version.split(".")[1])
