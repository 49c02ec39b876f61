"""The zipapp's operations side: --log-format json on every long-running
program (supernode, daemon, the seeder a get leaves), and /metrics and the
dashboards closed by --ops-token-file on the supernode's and the daemon's listener."""
import json
import os
import subprocess
import sys

import pytest
from daemons import fetch
from helpers import MiB, content, wait_until
from processes import Process

from dfly.demo import CountingOrigin

TOKEN = "0p5-t0ken-for-tests"


def json_lines(text: str) -> list:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_log_objects(lines: list) -> None:
    assert lines
    for entry in lines:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        assert entry["time"].endswith("Z") and entry["level"] in ("debug", "info", "warning", "error")


def assert_metrics_gated(address: str) -> None:
    """/metrics and the dashboard (page and feed) need the token, the same gate."""
    for path in ("/metrics", "/dashboard", "/v1/dashboard"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + TOKEN}):
            status, _, body = fetch(address, "GET", path, headers=headers)
            assert status == 401, (path, headers, status)
            assert TOKEN.encode() not in body
        status, _, _ = fetch(address, "GET", path, headers={"Authorization": "Bearer " + TOKEN})
        assert status == 200, path
    status, headers, body = fetch(address, "GET", "/metrics",
                                  headers={"Authorization": "Bearer " + TOKEN})
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b"# TYPE " in body


@pytest.mark.time_limit(120)
def test_json_logs_and_a_token_closed_metrics_on_supernode_daemon_and_seeder(pyz, tmp_path):
    token_file = tmp_path / "ops.token"
    token_file.write_text(TOKEN + "\n")
    origin_root = tmp_path / "origin"
    origin_root.mkdir()
    origin = CountingOrigin(str(origin_root))
    (origin_root / "f.bin").write_bytes(content(2 * MiB, seed=3))
    ops = ["--log-format", "json", "--ops-token-file", str(token_file)]
    supernode = Process(pyz, "supernode", "--listen", "127.0.0.1:0", "--data-dir",
                        str(tmp_path / "sn"), *ops)
    daemon = Process(pyz, "daemon", "--listen", "127.0.0.1:0", "--upload-listen", "127.0.0.1:0",
                     "--supernode", supernode.address, "--registry-mirror", "",
                     "--data-dir", str(tmp_path / "d"), *ops)
    try:
        assert_metrics_gated(supernode.address)
        assert_metrics_gated(daemon.address)
        get_dir = tmp_path / "get"
        subprocess.run([sys.executable, pyz, "get", origin.url("f.bin"), "-o", str(tmp_path / "out"),
                        "--supernode", supernode.address, "--data-dir", str(get_dir), "--seed-for",
                        "1s", "--upload-listen", "127.0.0.1:0", "--log-format", "json", "--quiet"],
                       check=True, timeout=60)
        seeder_log = get_dir / "logs" / "seeder.log"
        wait_until(lambda: seeder_log.exists() and "stopping" in seeder_log.read_text(), timeout=30,
                   message="the seeder logged its idle stop")
        assert_log_objects(json_lines(seeder_log.read_text()))
    finally:
        codes = [daemon.stop(), supernode.stop()]
        origin.stop()
    assert codes == [0, 0]
    for process, name in ((supernode, "supernode"), (daemon, "daemon")):
        lines = json_lines("".join(process.lines))
        assert_log_objects(lines)
        assert any(e["message"].startswith(name + " listening on") for e in lines)
        on_disk = (tmp_path / ("sn" if name == "supernode" else "d") / "logs" / (name + ".log"))
        assert_log_objects(json_lines(on_disk.read_text()))
    assert os.path.getsize(str(tmp_path / "out")) == 2 * MiB


def test_an_unreadable_ops_token_file_is_one_line_and_exit_2(pyz, tmp_path):
    run = subprocess.run([sys.executable, pyz, "supernode", "--listen", "127.0.0.1:0", "--data-dir",
                          str(tmp_path / "sn"), "--ops-token-file", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "--ops-token-file" in run.stderr and "Traceback" not in run.stderr
