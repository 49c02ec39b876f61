"""One live process per data dir, with the built dfly.pyz: `dfly scrub` and a
second `dfly supernode` on a running supernode's data dir each stop with one
line and exit 2; the lock goes with its process, however it ends (here: SIGKILL)."""
import subprocess
import sys

import pytest
from processes import Process

TIMEOUT_S = 30   # a refusal is immediate; a second server that runs fails the test here


def _run(pyz, *args):
    return subprocess.run([sys.executable, pyz] + list(args), capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def _refused_in_one_line(done, holder: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("dfly: error:")]
    assert len(errors) == 1 and "is in use by %s" % holder in errors[0], done.stderr


@pytest.mark.time_limit(90)
def test_a_running_supernode_keeps_scrub_and_a_second_supernode_off_its_data_dir(pyz, tmp_path):
    data_dir = str(tmp_path / "sn")
    first = Process(pyz, "supernode", "--listen", "127.0.0.1:0", "--data-dir", data_dir)
    try:
        holder = "dfly supernode (pid %d)" % first.proc.pid
        _refused_in_one_line(_run(pyz, "scrub", "--data-dir", data_dir), holder)
        _refused_in_one_line(_run(pyz, "supernode", "--listen", "127.0.0.1:0", "--data-dir", data_dir),
                             holder)
        assert first.proc.poll() is None
    finally:
        first.proc.kill()   # no clean stop: the kernel lets go of the lock
        first.proc.wait(15)
        first._watch.join(10)
    done = _run(pyz, "scrub", "--data-dir", data_dir)
    assert done.returncode == 0 and "0 damaged" in done.stdout, done.stderr


@pytest.mark.time_limit(90)
def test_a_second_daemon_on_a_running_daemons_data_dir_stops_in_one_line(pyz, tmp_path):
    data_dir = str(tmp_path / "d")
    flags = ["--listen", "127.0.0.1:0", "--upload-listen", "127.0.0.1:0", "--data-dir", data_dir,
             "--registry-mirror", "http://127.0.0.1:9"]   # asked nothing: no request is made
    first = Process(pyz, "daemon", *flags)
    try:
        holder = "dfly daemon (pid %d)" % first.proc.pid
        _refused_in_one_line(_run(pyz, "daemon", *flags), holder)
        _refused_in_one_line(_run(pyz, "scrub", "--data-dir", data_dir), holder)
        assert first.proc.poll() is None
    finally:
        assert first.stop() == 0
