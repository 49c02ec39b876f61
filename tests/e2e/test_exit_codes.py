"""Every exit code the README documents for `dfly get`, from the built zipapp,
each caused the way a user meets it: a one-line error on stderr, no traceback,
nothing at the target name and no temporary file left beside it."""
import os
import signal
import subprocess
import sys
import threading

import pytest
from helpers import MiB, content, leftovers, refused_address, sha256_file, wait_until

from dfly.supernode import app
from dfly.supernode.config import SupernodeConfig

TIMEOUT_S = 60


def dfly_get(pyz, url, target, *extra, cwd):
    return subprocess.run([sys.executable, pyz, "get", url, "-o", str(target), "--no-daemon",
                           "--data-dir", str(cwd), "--upload-listen", "127.0.0.1:0",
                           "--seed-for", "0"] + list(extra),
                          capture_output=True, text=True, timeout=TIMEOUT_S, cwd=str(cwd))


def assert_failed_cleanly(out, code, words, target):
    assert out.returncode == code, (out.returncode, out.stderr)
    assert words in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("dfly: ") and out.stderr.endswith("\n")
    assert not os.path.exists(str(target))
    assert leftovers(os.path.dirname(str(target))) == []


@pytest.fixture
def supernode(tmp_path):
    running = app.start(SupernodeConfig(listen="127.0.0.1:0"), str(tmp_path / "sn"))
    yield running.address
    running.stop()


def test_exit_0_on_success(pyz, origin, tmp_path):
    src = origin.add("f.bin", content(MiB + 3, seed=51))
    out = dfly_get(pyz, src.url, tmp_path / "f.bin", "--digest", src.digest, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sha256_file(str(tmp_path / "f.bin")) == src.sha256


@pytest.mark.parametrize("extra", [("--digest", "md5:nothex"), ("--header", "no colon"),
                                   ("--timeout", "soon"), ("--no-such-flag",)],
                         ids=["bad digest", "bad header", "bad duration", "unknown flag"])
def test_exit_2_on_a_usage_error(pyz, origin, tmp_path, extra):
    src = origin.add("f.bin", content(1024, seed=52))
    out = dfly_get(pyz, src.url, tmp_path / "f.bin", *extra, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "error" in out.stderr
    assert not (tmp_path / "f.bin").exists()
    assert origin.arrived("f.bin") == 0


def test_exit_3_when_the_origin_answers_an_error(pyz, origin, tmp_path):
    out = dfly_get(pyz, origin.url("missing.bin"), tmp_path / "x.bin", cwd=tmp_path)
    assert_failed_cleanly(out, 3, "404", tmp_path / "x.bin")


def test_exit_3_when_the_origin_is_unreachable(pyz, tmp_path):
    with refused_address() as (host, port):
        out = dfly_get(pyz, "http://%s:%d/f.bin" % (host, port), tmp_path / "x.bin", cwd=tmp_path)
    assert_failed_cleanly(out, 3, "cannot reach", tmp_path / "x.bin")


def test_exit_4_when_the_content_does_not_match_the_digest(pyz, origin, tmp_path):
    src = origin.add("f.bin", content(MiB, seed=53))
    out = dfly_get(pyz, src.url, tmp_path / "x.bin", "--digest", "sha256:" + "0" * 64, cwd=tmp_path)
    assert_failed_cleanly(out, 4, "does not match", tmp_path / "x.bin")


@pytest.mark.parametrize("route", ["source", "supernode"])
def test_exit_5_when_a_stalled_origin_outlasts_the_timeout(pyz, origin, tmp_path, request, route):
    src = origin.add("slow.bin", content(4 * MiB, seed=54))
    origin.fault("slow.bin", stall_after=MiB + 5)    # sends a little, then nothing until stopped
    via = ["--supernode", request.getfixturevalue("supernode")] if route == "supernode" else []
    out = dfly_get(pyz, src.url, tmp_path / "x.bin", "--timeout", "2s", *via, cwd=tmp_path)
    assert_failed_cleanly(out, 5, "timed out", tmp_path / "x.bin")
    assert origin.arrived("slow.bin") == 1
    origin.stop()   # the stalled fetch ends now, not when the supernode's stop gives up on it (5 s)


def test_exit_6_when_the_target_cannot_be_written(pyz, origin, tmp_path):
    src = origin.add("f.bin", content(1024, seed=55))
    target = tmp_path / "no" / "such" / "dir" / "f.bin"
    out = dfly_get(pyz, src.url, target, cwd=tmp_path)
    assert out.returncode == 6, out.stderr
    assert "Traceback" not in out.stderr and str(tmp_path / "no" / "such") in out.stderr
    assert not (tmp_path / "no").exists()


def test_exit_7_when_no_supernode_answers_and_back_to_source_is_off(pyz, origin, tmp_path):
    src = origin.add("f.bin", content(1024, seed=56))
    with refused_address() as (host, port):
        out = dfly_get(pyz, src.url, tmp_path / "x.bin", "--supernode", "%s:%d" % (host, port),
                       "--no-back-source", cwd=tmp_path)
    assert_failed_cleanly(out, 7, "no supernode reachable", tmp_path / "x.bin")
    assert origin.arrived("f.bin") == 0


class Daemon:
    """`python dfly.pyz daemon` on 127.0.0.1:0; the address read from its log."""

    def __init__(self, pyz, data_dir):
        self.proc = subprocess.Popen([sys.executable, pyz, "daemon", "--listen", "127.0.0.1:0",
                                      "--upload-listen", "127.0.0.1:0", "--data-dir", data_dir],
                                     stderr=subprocess.PIPE, text=True)
        self.address = None
        found = threading.Event()

        def watch():
            for line in self.proc.stderr:
                if self.address is None and "listening on " in line:
                    self.address = line.split("listening on ")[1].split(",")[0].split(" ")[0]
                    found.set()
        self._watch = threading.Thread(target=watch, daemon=True, name="daemon-log")
        self._watch.start()
        assert found.wait(30), "the daemon did not report its address"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(15)
        self._watch.join(10)


@pytest.mark.time_limit(60)
def test_exit_1_when_the_daemon_that_took_the_download_dies(pyz, origin, tmp_path):
    """`1 other`: the download was handed to this host's daemon, which was killed
    before it answered; `get` cannot know what happened to it."""
    src = origin.add("f.bin", content(4 * MiB, seed=57))
    origin.fault("f.bin", stall_after=MiB)
    data_dir = str(tmp_path / "data")   # one per host, as by default: get finds its daemon's files
    daemon = Daemon(pyz, data_dir)
    try:
        # --timeout: a get that did not hand the download over ends (exit 5), not hangs
        get = subprocess.Popen([sys.executable, pyz, "get", src.url, "-o", str(tmp_path / "x.bin"),
                                "--daemon", daemon.address, "--data-dir", data_dir, "--timeout", "20s"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=str(tmp_path))
        try:
            wait_until(lambda: origin.arrived("f.bin") >= 1, timeout=20,
                       message="the daemon asked the origin")
            daemon.kill()
            _, stderr = get.communicate(timeout=TIMEOUT_S)
        finally:
            if get.poll() is None:
                get.kill()
                get.wait(10)
    finally:
        daemon.kill()
    assert get.returncode == 1, stderr
    assert "daemon" in stderr and "stopped answering" in stderr, stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "x.bin").exists()
