"""What the end-to-end tests share: the zipapp, built once per session from this
checkout, so packaging cannot drift from the code."""
import os
import subprocess
import sys

import pytest
import pythons

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def pyz(tmp_path_factory):
    target = str(tmp_path_factory.mktemp("build") / "dfly.pyz")
    subprocess.run([sys.executable, os.path.join(ROOT, "build_zipapp.py"), "-o", target],
                   check=True, timeout=120, stdout=subprocess.DEVNULL)
    return target


SWARM_TEST = "test_zipapp_runs_a_swarm_on_each_python"
_swarm_tests_ran = []


def pytest_runtest_logreport(report):
    if report.when == "call" and SWARM_TEST in report.nodeid:
        _swarm_tests_ran.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """Under CI=true, a Python 3.8-3.13 this machine has that the zipapp did not
    run on fails the run (it used to fall back to one interpreter silently)."""
    if os.environ.get("CI") == "true" and _swarm_tests_ran and pythons.missed():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if not _swarm_tests_ran:
        return
    for line in pythons.summary():
        terminalreporter.write_line(line)
    if os.environ.get("CI") == "true" and pythons.missed():
        terminalreporter.write_line("FAILED: CI=true and the zipapp did not run on every Python here",
                                    red=True)
