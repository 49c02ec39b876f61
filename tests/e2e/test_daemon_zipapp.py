"""`python dfly.pyz daemon` as users run it: started with flags, found by
`dfly get`, pulled through by skopeo as a registry mirror, stopped by SIGTERM."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from dfly.demo import CountingOrigin, write_random_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from processes import Process  # noqa: E402
from registry import MISSING, Registry, build_image, dir_layers, mirror_conf, pull, push  # noqa: E402

TIMEOUT_S = 60


@pytest.mark.time_limit(90)
def test_the_zipapp_daemon_takes_gets_and_mirrors_a_registry(pyz, tmp_path):
    (tmp_path / "origin").mkdir()
    origin = CountingOrigin(str(tmp_path / "origin"))
    registry = None if MISSING else Registry(str(tmp_path / "registry"))
    supernode = Process(pyz, "supernode", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "sn"))
    daemon = None
    try:
        mirror = ["--registry-mirror", registry.url] if registry else []
        daemon = Process(pyz, "daemon", "--listen", "127.0.0.1:0", "--upload-listen", "127.0.0.1:0",
                         "--supernode", supernode.address, "--data-dir", str(tmp_path / "d"), *mirror)
        digest = write_random_file(str(tmp_path / "origin" / "f.bin"), 6 * 1024 * 1024)
        # the daemon's user: its data dir holds the hand-off token `get` reads by default
        same_user = dict(os.environ, DFLY_DATA_DIR=str(tmp_path / "d"))
        out = subprocess.run([sys.executable, pyz, "get", origin.url("f.bin"), "-o", str(tmp_path / "f.bin"),
                              "--daemon", daemon.address, "--digest", digest, "--json"],
                             capture_output=True, text=True, timeout=TIMEOUT_S, cwd=str(tmp_path),
                             env=same_user)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["path"] == str(tmp_path / "f.bin")
        assert json.loads(out.stdout)["via"] != "source"
        assert "sha256:" + hashlib.sha256((tmp_path / "f.bin").read_bytes()).hexdigest() == digest
        missing = subprocess.run([sys.executable, pyz, "get", origin.url("f.bin"), "-o",
                                  str(tmp_path / "nodir" / "f.bin"), "--daemon", daemon.address],
                                 capture_output=True, text=True, timeout=TIMEOUT_S, env=same_user)
        assert missing.returncode == 6
        assert missing.stderr.strip() == "dfly: error: output directory %s does not exist" % (
            tmp_path / "nodir")
        if registry:
            image = build_image(str(tmp_path / "layout"), "v1", layer_sizes=(1 << 20,))
            push(image, registry, "team/app")
            conf = mirror_conf(str(tmp_path / "registries.conf"), registry, daemon.address)
            pull(conf, registry, "team/app", "v1", str(tmp_path / "pulled"), arch="arm64")
            assert dir_layers(str(tmp_path / "pulled")) == image.layers["arm64"]
            registry.settle()
            assert len(registry.blob_gets(image.layers["arm64"][0])) == 1
    finally:
        codes = [p.stop() for p in (daemon, supernode) if p is not None]
        if registry:
            registry.stop()
        origin.stop()
    assert codes == [0, 0]
    if MISSING:
        pytest.skip("registry part skipped: " + MISSING)
