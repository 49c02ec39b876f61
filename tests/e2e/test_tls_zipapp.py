"""The built dfly.pyz with mutual TLS everywhere: a supernode, four gets and a
daemon with cluster certificates (trustme) download one file correctly, partly
from each other; gets without a certificate, with an expired one or with one of
another CA are refused at the handshake (one line, exit 10); the supernode
serves a rotated certificate after SIGHUP without a restart; real curl reads
no piece from a get's uploader (its detached seeder) without a certificate or
with one of another CA, and gets 403 with a cluster certificate but no token."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from dfly.demo import CountingOrigin, write_random_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from certs import Certs, served_certificate  # noqa: E402
from helpers import wait_until  # noqa: E402
from processes import Process  # noqa: E402

TIMEOUT_S = 90
TLS_EXIT = 10


def _flags(settings: dict) -> list:
    out = []
    for name, value in settings.items():
        out += ["--" + name.replace("_", "-"), value]
    return out


@pytest.fixture
def cluster(pyz, tmp_path):
    """An origin with one 48 MiB file, and a supernode requiring client certificates."""
    (tmp_path / "origin").mkdir()
    origin = CountingOrigin(str(tmp_path / "origin"))
    digest = write_random_file(str(tmp_path / "origin" / "f.bin"), 48 << 20)
    certs = Certs(str(tmp_path / "certs"))
    supernode = Process(pyz, "supernode", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "sn"),
                        *_flags(certs.mtls("supernode")))
    yield origin, digest, certs, supernode
    supernode.stop()
    origin.stop()


def _get(pyz, tmp_path, name, url, supernode, *extra, tls=None):
    out = str(tmp_path / name)
    return subprocess.Popen([sys.executable, pyz, "get", url, "-o", out, "--supernode", supernode,
                             "--data-dir", str(tmp_path / ("data-" + name)), "--seed-for", "1s",
                             "--upload-listen", "127.0.0.1:0", "--json"] + list(extra) + _flags(tls or {}),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))


@pytest.mark.time_limit(150)
def test_supernode_four_gets_and_a_daemon_all_with_mtls(pyz, tmp_path, cluster):
    origin, digest, certs, supernode = cluster
    daemon = Process(pyz, "daemon", "--listen", "127.0.0.1:0", "--upload-listen", "127.0.0.1:0",
                     "--supernode", supernode.address, "--data-dir", str(tmp_path / "daemon"),
                     *_flags(certs.mtls("daemon")))
    try:
        gets = [_get(pyz, tmp_path, "copy%d.bin" % i, origin.url("f.bin"), supernode.address,
                     "--digest", digest, "--no-daemon", tls=certs.mtls("get%d" % i)) for i in range(4)]
        handed = _get(pyz, tmp_path, "handed.bin", origin.url("f.bin"), supernode.address,
                      "--digest", digest, "--daemon", daemon.address,
                      "--daemon-token", str(tmp_path / "daemon" / "daemon" / "handoff.token"))
        results = []
        for proc in gets + [handed]:
            stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
            assert proc.returncode == 0, stderr
            results.append(json.loads(stdout))
    finally:
        assert daemon.stop() == 0
    assert all(r["via"] == "p2p" for r in results)   # every digest checked by --digest
    assert sum(r["bytes_from_peers"] for r in results) > 0
    assert origin.sent_bytes == 48 << 20


@pytest.mark.time_limit(120)
def test_gets_without_a_good_certificate_are_refused_at_the_handshake(pyz, tmp_path, cluster):
    origin, digest, certs, supernode = cluster
    cases = {"none": {"tls_ca": certs.ca}, "expired": certs.mtls("old", expired=True),
             "stranger": certs.mtls("stranger", other_ca=True), "plain": {}}
    procs = {name: _get(pyz, tmp_path, name + ".bin", origin.url("f.bin"), supernode.address,
                        "--no-daemon", tls=tls) for name, tls in cases.items()}
    errors = {}
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == TLS_EXIT, (name, stderr)
        assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
        assert not os.path.exists(str(tmp_path / (name + ".bin")))
        errors[name] = stderr
    assert "requires a client certificate" in errors["none"]
    assert "expired" in errors["expired"]
    assert "another CA" in errors["stranger"]
    assert "speaks TLS only" in errors["plain"]
    assert origin.sent_bytes == 0
    assert supernode.proc.poll() is None   # the listener lives on
    served_certificate(supernode.address, certs.ca, certs.host("checker"))


@pytest.mark.time_limit(60)
def test_the_supernode_serves_a_rotated_certificate_after_sighup(pyz, tmp_path, cluster):
    _, _, certs, supernode = cluster
    me = certs.host("checker")
    before = served_certificate(supernode.address, certs.ca, me)
    certs.rotate_unseen("supernode")   # the files look unchanged: only the signal reloads them
    supernode.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: served_certificate(supernode.address, certs.ca, me) != before, timeout=10,
               message="the rotated certificate is served")
    wait_until(lambda: any("reloaded" in line for line in supernode.lines), timeout=10,
               message="the reload logged")   # the log is read by another thread
    assert supernode.proc.poll() is None


@pytest.mark.time_limit(120)
def test_a_detached_seeder_serves_its_pieces_over_mtls(pyz, tmp_path, cluster):
    origin, digest, certs, supernode = cluster
    first = _get(pyz, tmp_path, "first.bin", origin.url("f.bin"), supernode.address, "--digest", digest,
                 "--no-daemon", "--seed-for", "5s", tls=certs.mtls("first"))
    _, stderr = first.communicate(timeout=TIMEOUT_S)
    assert first.returncode == 0, stderr
    second = _get(pyz, tmp_path, "second.bin", origin.url("f.bin"), supernode.address, "--digest", digest,
                  "--no-daemon", "--seed-for", "0", tls=certs.mtls("second"))
    stdout, stderr = second.communicate(timeout=TIMEOUT_S)
    assert second.returncode == 0, stderr
    assert json.loads(stdout)["bytes_from_peers"] > 0   # only the first get's seeder holds pieces


def _curl(*args):
    return subprocess.run([shutil.which("curl"), "-sS", "-o", os.devnull, "-w", "%{http_code}"]
                          + list(args), capture_output=True, text=True, timeout=30)


@pytest.mark.time_limit(120)
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_reads_no_piece_from_a_zipapp_uploader_without_a_certificate_nor_without_a_token(
        pyz, tmp_path, cluster):
    origin, digest, certs, supernode = cluster
    first = _get(pyz, tmp_path, "first.bin", origin.url("f.bin"), supernode.address, "--digest", digest,
                 "--no-daemon", "--seed-for", "60s", tls=certs.mtls("first"))
    stdout, stderr = first.communicate(timeout=TIMEOUT_S)
    data = str(tmp_path / "data-first.bin")
    try:
        assert first.returncode == 0, stderr
        task_id = json.loads(stdout)["task_id"]
        listing = subprocess.run([sys.executable, pyz, "seeders", "--json", "--data-dir", data],
                                 capture_output=True, text=True, timeout=30)
        port = json.loads(listing.stdout)["port"]
        piece = "https://127.0.0.1:%d/v1/tasks/%s/pieces/0" % (port, task_id)
        member, stranger = certs.host("member"), certs.mtls("stranger", other_ca=True)

        anonymous = _curl("--cacert", certs.ca, piece)
        assert anonymous.returncode != 0 and anonymous.stdout == "000", anonymous   # the handshake
        foreign = _curl("--cacert", certs.ca, "--cert", stranger["tls_cert"], "--key", stranger["tls_key"],
                        piece)
        assert foreign.returncode != 0 and foreign.stdout == "000", foreign
        for url in (piece, piece + "?peer=someone"):   # a certificate is not a schedule
            untokened = _curl("--cacert", certs.ca, "--cert", member["tls_cert"], "--key",
                              member["tls_key"], url)
            assert untokened.stdout == "403", untokened
    finally:
        subprocess.run([sys.executable, pyz, "seeders", "--stop", "--data-dir", data],
                       capture_output=True, timeout=30)
