"""What the end-to-end tests share: the zipapp, built once per session (per worker
under pytest -n) from this checkout, so packaging cannot drift from the code.
Which Pythons it ran on is tallied in tests/conftest.py."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def pyz(tmp_path_factory):
    target = str(tmp_path_factory.mktemp("build") / "dfly.pyz")
    subprocess.run([sys.executable, os.path.join(ROOT, "build_zipapp.py"), "-o", target],
                   check=True, timeout=120, stdout=subprocess.DEVNULL)
    return target
