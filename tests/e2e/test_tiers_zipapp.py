"""Supernode tiers through the built zipapp: a downstream supernode process
with --upstream-supernode serves a `get` from the upstream process's cache,
the origin sending the file once; a supernode named as its own upstream does
not start (exit 2)."""
import subprocess
import sys

from helpers import content, reserve_ports, sha256_file
from test_zipapp import SupernodeProcess, _get

SIZE = 5 * 1024 * 1024


def test_a_get_in_the_downstream_region_is_served_through_the_upstream_supernode(
        pyz, origin, tmp_path):
    src = origin.add("f.bin", content(SIZE, seed=1907))
    upstream = SupernodeProcess(sys.executable, pyz, str(tmp_path / "a"))
    try:
        below = SupernodeProcess(sys.executable, pyz, str(tmp_path / "b"), "--upstream-supernode",
                                 upstream.address, "--upstream-upload-listen", "127.0.0.1:0")
        try:
            for name in ("one", "two"):
                (tmp_path / name).mkdir()
                got = _get(sys.executable, pyz, src.url, str(tmp_path / name / "f.bin"),
                           str(tmp_path / name), "--supernode", below.address, "--digest", src.digest,
                           "--no-back-source", "--seed-for", "0")
                assert got.returncode == 0, got.stderr
                assert sha256_file(str(tmp_path / name / "f.bin")) == src.sha256
        finally:
            below.stop()
    finally:
        upstream.stop()
    assert origin.body_bytes("f.bin") == SIZE


def test_a_supernode_that_is_its_own_upstream_exits_2(pyz, tmp_path):
    address, = reserve_ports(1)
    port = address.rsplit(":", 1)[1]
    run = subprocess.run([sys.executable, pyz, "supernode", "--listen", address,
                          "--upstream-supernode", "localhost:" + port, "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=20)
    assert run.returncode == 2
    assert "cannot be its own upstream" in run.stderr and "Traceback" not in run.stderr
