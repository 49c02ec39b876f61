"""Fixtures and bounds shared by every test tier.

Every test runs under a time limit (default DEFAULT_TIME_LIMIT_S, or
@pytest.mark.time_limit(seconds)) covering its setup, call and teardown, so CI
needs nothing beyond pytest: SIGALRM fails the test with every thread's stack
on stderr, and a faulthandler backstop ends the run if even that cannot break
through.
"""
import faulthandler
import fcntl
import os
import signal
import sys
import tempfile
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:   # `pytest` as well as `python -m pytest` from the checkout
    sys.path.insert(0, ROOT)

from origin import Origin  # noqa: E402

# No test may ask a cloud's metadata services (the network rule: loopback only): the
# instance provider is switched off, and were it not, its endpoint is a closed loopback
# port; no container endpoint is inherited. Processes the tests start inherit this.
# Tests of those providers pass their own environment (a loopback server's address).
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = "http://127.0.0.1:9"
for _name in ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
              "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"):
    os.environ.pop(_name, None)

DEFAULT_TIME_LIMIT_S = 30.0
# Every limit times this: tests/mutation.py sets it, since mutmut's tracing on a machine
# under load makes the unit tier many times slower, and a clean run must not time out.
TIME_LIMIT_SCALE = float(os.environ.get("DFLY_TEST_TIME_SCALE") or 1)
BACKSTOP_GRACE_S = 30.0


def pytest_configure(config):
    config.addinivalue_line("markers", "time_limit(seconds): fail the test if its setup, call "
                                       "and teardown take longer than this")
    config.addinivalue_line("markers", "alone: under pytest -n, no other test runs while this one "
                                       "does (timing-sensitive runs of many processes)")


class TimeLimitExceeded(BaseException):
    """Not an Exception, so code under test that catches Exception cannot swallow it."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    marker = item.get_closest_marker("time_limit")
    limit = (float(marker.args[0]) if marker else DEFAULT_TIME_LIMIT_S) * TIME_LIMIT_SCALE
    use_alarm = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()

    def expired(signum, frame):
        sys.stderr.write("\n%s exceeded its time limit of %.0fs; threads:\n" % (item.nodeid, limit))
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        raise TimeLimitExceeded("%s took longer than %.0fs" % (item.nodeid, limit))

    turn = Turn.take(item)   # before the clock starts: waiting for it is not the test's time
    # The real stderr: a runner that captures sys.stderr (mutmut) gives one with no fileno.
    faulthandler.dump_traceback_later(limit + BACKSTOP_GRACE_S, exit=True, file=sys.__stderr__)
    if use_alarm:
        previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()
        turn.release()


class Turn:
    """Under pytest -n (pytest-xdist), a test's turn to run: every test holds a lock
    file shared by the run's workers, an @pytest.mark.alone test holds it exclusively.
    A second file, the gate, is taken for a moment before it, and held by an alone test
    while it waits: the other worker's next test waits behind it, so a stream of
    shared holders cannot starve it. One process (no -n): every turn is free."""

    files: dict = {}   # path -> descriptor, open for the worker's whole session

    def __init__(self, run=None):
        self.run = run

    @classmethod
    def take(cls, item) -> "Turn":
        workerinput = getattr(item.config, "workerinput", None)
        if workerinput is None:
            return cls()
        gate, run = (cls._open(workerinput["testrunuid"], name) for name in ("gate", "run"))
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            alone = item.get_closest_marker("alone") is not None
            fcntl.flock(run, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        return cls(run)

    def release(self) -> None:
        if self.run is not None:
            fcntl.flock(self.run, fcntl.LOCK_UN)

    @classmethod
    def _open(cls, run_id: str, name: str) -> int:
        path = os.path.join(tempfile.gettempdir(), "dfly-tests-%s.%s" % (run_id, name))
        if path not in cls.files:
            cls.files[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        return cls.files[path]

    @classmethod
    def remove_files(cls) -> None:
        """At a worker's end. A worker still running keeps its descriptors (the same
        files), and with no other worker left it waits for nobody."""
        for path in cls.files:
            try:
                os.remove(path)
            except OSError:
                pass


# The e2e tier runs the zipapp's swarm on each CPython 3.8-3.13 here (tests/e2e/pythons.py).
# Its passed reports are tallied here, where the run ends: under pytest -n the tests run in
# worker processes and only their reports reach this one.
SWARM_TEST = "test_zipapp_runs_a_swarm_on_each_python"
_swarm_tests_ran = []


def _pythons():
    """tests/e2e/pythons.py, the module the e2e tests import by that name."""
    folder = os.path.join(ROOT, "tests", "e2e")
    if folder not in sys.path:
        sys.path.append(folder)
    import pythons
    return pythons


def pytest_runtest_logreport(report):
    if report.when == "call" and SWARM_TEST in report.nodeid:
        _swarm_tests_ran.append(report.nodeid)
        if report.passed:   # it ran and did its job: [3.N] in its id
            _pythons().ran_on(report.nodeid.rsplit("[", 1)[1].rstrip("]"))


def _in_worker(config) -> bool:
    return hasattr(config, "workerinput")   # pytest-xdist's worker: its controller decides


def pytest_sessionfinish(session, exitstatus):
    """Under CI=true, a Python 3.8-3.13 this machine has that the zipapp did not
    run on fails the run (it used to fall back to one interpreter silently)."""
    Turn.remove_files()
    if _in_worker(session.config) or not _swarm_tests_ran:
        return
    if os.environ.get("CI") == "true" and _pythons().missed():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _in_worker(terminalreporter.config) or not _swarm_tests_ran:
        return
    for line in _pythons().summary():
        terminalreporter.write_line(line)
    if os.environ.get("CI") == "true" and _pythons().missed():
        terminalreporter.write_line("FAILED: CI=true and the zipapp did not run on every Python here",
                                    red=True)


@pytest.fixture
def origin(tmp_path):
    """A real HTTP origin on 127.0.0.1:0 serving files from tmp_path/origin."""
    server = Origin(str(tmp_path / "origin"))
    yield server
    server.stop()
