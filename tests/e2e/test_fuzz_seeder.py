"""The detached seeder `dfly get --seed-for` leaves behind (the built zipapp),
fuzzed at the socket like every other listener (tests/fuzz.py), inside a
network namespace of the test's own: it stays up, leaks nothing, serves its
pieces, and its threads and open files (/proc/PID) come back."""
import json
import os
import signal
import subprocess
import sys

import pytest
from fuzz import (
    Fuzzer,
    exchange,
    free_port,
    open_fds,
    private_network,
    request,
    status_of,
    thread_count,
    traversals,
    why_no_private_network,
)
from helpers import MiB, content, piece_access, wait_until
from origin import Origin

from dfly.supernode import app
from dfly.supernode.config import SupernodeConfig

pytestmark = pytest.mark.skipif(bool(why_no_private_network()), reason=why_no_private_network())


@pytest.fixture(autouse=True)
def private_net():
    with private_network():
        yield


def _seeder_pid(marker: str) -> int:
    """The process still running whose command line names `marker` (get's output path):
    the seeder get forked before it returned."""
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    if marker.encode() in f.read():
                        return int(name)
            except OSError:
                pass
    return 0


@pytest.mark.time_limit(90)
def test_a_fuzzed_detached_seeder_stays_up_leaks_nothing_and_serves_pieces(pyz, tmp_path):
    canary_path = tmp_path / "outside" / "canary.txt"
    canary_path.parent.mkdir()
    canary = b"DFLY-CANARY-" + os.urandom(8).hex().encode()
    canary_path.write_bytes(canary)
    origin = Origin(str(tmp_path / "origin"))
    supernode = app.start(SupernodeConfig(listen="127.0.0.1:0"), str(tmp_path / "supernode"))
    pid = 0
    try:
        src = origin.add("seeded.bin", content(2 * MiB + 9, seed=14))
        out, data_dir, port = str(tmp_path / "seeded.bin"), str(tmp_path / "peer"), free_port()
        got = subprocess.run([sys.executable, pyz, "get", src.url, "-o", out, "--data-dir", data_dir,
                              "--supernode", supernode.address, "--seed-for", "60",
                              "--upload-listen", "127.0.0.1:%d" % port, "--json"],
                             capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
        assert got.returncode == 0, got.stderr
        tid = json.loads(got.stdout)["task_id"]
        pid = wait_until(lambda: _seeder_pid(out), timeout=10, message="the seeder process")
        address = ("127.0.0.1", port)
        wait_until(lambda: status_of(exchange(address, request("GET", "/healthz"), 2.0)) == 200)

        # what a schedule reply naming the seeder would carry: a token under its peer secret
        holder = next(iter(supernode.service.loaded_task(tid).scheduler.peers))
        query, token = piece_access(supernode.service._holder_key(holder), tid)
        seeds = [
            request("GET", "/healthz"), request("GET", "/v1/tasks/%s/pieces/0" % tid),
            request("GET", "/v1/tasks/%s/pieces/1%s" % (tid, query), list(token.items())),
            request("GET", "/v1/tasks/%s/pieces/2?peer=x" % tid, [("Range", "bytes=1-5")]),
            request("HEAD", "/v1/tasks/%s/pieces/1" % tid),
        ] + traversals(str(canary_path), data_dir, ["/v1/tasks/{}/pieces/0",
                                                    "/v1/tasks/%s/pieces/{}" % tid, "/{}"])
        threads, fds = thread_count(pid), open_fds(pid)
        report = Fuzzer(seeds, canary, rng_seed=4, max_requests=2000, max_seconds=8.0).fuzz(address)
        assert report.sent >= 50, report
        assert report.findings == [], "\n".join(report.findings[:10])
        wait_until(lambda: thread_count(pid) <= threads, timeout=20,
                   message="seeder threads back to %d" % threads)
        wait_until(lambda: open_fds(pid) <= fds, timeout=20, message="seeder files back to %d" % fds)

        reply = exchange(address, request("GET", "/v1/tasks/%s/pieces/2%s" % (tid, query),
                                          [("Connection", "close")] + list(token.items())), 5.0)
        assert status_of(reply) == 200 and reply.partition(b"\r\n\r\n")[2] == src.data[2 * MiB:]
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
        supernode.stop()
        origin.stop()
