"""Bad bytes in a cache, end to end with the built dfly.pyz: the issue's
reproduction (one byte flipped in a supernode's cached 8 MiB file), a daemon's
cached blob, a seeding peer's copy, the supernode's cache damaged while it was
down, and `dfly scrub`.

In each: every get's file is correct, the origin (tests/origin.py, counting
bytes and Range requests) serves at most one extra piece per bad piece, the
damage is logged once, and the next get sees no failure."""
import http.client
import json
import os
import signal
import subprocess
import sys
import threading

import pytest
from helpers import MiB, content, sha256_file, wait_until

PIECE = MiB
SIZE = 8 * MiB
TIMEOUT_S = 60


class Supernode:
    """`dfly.pyz supernode` on 127.0.0.1:0; the port is read from its log."""

    def __init__(self, pyz, data_dir, *extra, listen="127.0.0.1:0"):
        self.data_dir = data_dir
        self.proc = subprocess.Popen([sys.executable, pyz, "supernode", "--listen", listen,
                                      "--data-dir", data_dir] + list(extra),
                                     stderr=subprocess.PIPE, text=True)
        self.address = None
        found = threading.Event()

        def watch():
            for line in self.proc.stderr:
                if self.address is None and "listening on" in line:
                    self.address = line.split("listening on ")[1].split(",")[0]
                    found.set()
        threading.Thread(target=watch, daemon=True, name="supernode-log").start()
        assert found.wait(30), "supernode did not report its address"

    def log_lines(self, word):
        with open(os.path.join(self.data_dir, "logs", "supernode.log")) as f:
            return [line for line in f if word in line]

    def tasks(self):
        host, port = self.address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("GET", "/v1/tasks")
            return json.loads(conn.getresponse().read())["tasks"]
        finally:
            conn.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)


@pytest.fixture
def supernodes():
    started = []

    def start(*args, **kwargs):
        started.append(Supernode(*args, **kwargs))
        return started[-1]
    yield start
    for supernode in reversed(started):
        supernode.stop()


def get(pyz, url, out, data_dir, supernode, *extra):
    os.makedirs(data_dir, exist_ok=True)
    done = subprocess.run([sys.executable, pyz, "get", url, "-o", out, "--data-dir", data_dir,
                           "--upload-listen", "127.0.0.1:0", "--supernode", supernode.address,
                           "--json"] + (list(extra) or ["--seed-for", "0"]),
                          capture_output=True, text=True, timeout=TIMEOUT_S, cwd=data_dir)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def cached(supernode, task_id):
    return os.path.join(supernode.data_dir, "tasks", task_id, "data")


@pytest.mark.time_limit(120)
def test_one_flipped_byte_in_the_supernode_cache_costs_one_piece_not_a_copy_per_get(
        pyz, origin, supernodes, tmp_path):
    f = origin.add("f.bin", content(SIZE, seed=40))
    supernode = supernodes(pyz, str(tmp_path / "sn"), "--scrub-rate", "0")
    first = get(pyz, f.url, str(tmp_path / "0.bin"), str(tmp_path / "p0"), supernode)
    flip_byte(cached(supernode, first["task_id"]), 100)

    for i in (1, 2, 3):
        result = get(pyz, f.url, str(tmp_path / ("%d.bin" % i)), str(tmp_path / ("p%d" % i)), supernode)
        assert sha256_file(str(tmp_path / ("%d.bin" % i))) == f.sha256
        assert result["bytes_from_source"] == 0, "get %d went back to the source" % i

    assert origin.body_bytes("f.bin") == SIZE + PIECE
    assert [s.headers.get("Range") for s in origin.served("f.bin") if s.status == 206] == [
        "bytes=0-%d" % (PIECE - 1)]
    assert len(supernode.log_lines("damaged")) == 1
    task = [t for t in supernode.tasks() if t["task_id"] == first["task_id"]][0]
    assert task["repaired_pieces"] == 1 and task["discarded"] == {"supernode": 1}


@pytest.mark.time_limit(120)
def test_a_seeder_whose_copy_went_bad_stops_serving_that_piece_and_says_so(
        pyz, origin, supernodes, tmp_path):
    f = origin.add("f.bin", content(SIZE, seed=41))
    supernode = supernodes(pyz, str(tmp_path / "sn"), "--scrub-rate", "0")
    seeding_dir = str(tmp_path / "seeding")
    first = get(pyz, f.url, str(tmp_path / "0.bin"), seeding_dir, supernode, "--seed-for", "20")
    flip_byte(str(tmp_path / "0.bin"), 2 * PIECE + 9)   # the seeder serves a hard link of it

    second = get(pyz, f.url, str(tmp_path / "1.bin"), str(tmp_path / "p1"), supernode)
    assert sha256_file(str(tmp_path / "1.bin")) == f.sha256 and second["bytes_from_source"] == 0
    assert second["bytes_from_peers"] > 0
    seeder_log = os.path.join(seeding_dir, "logs", "seeder.log")

    def damage_logged():
        with open(seeder_log) as log:
            return [line for line in log if "damaged" in line]
    assert len(wait_until(damage_logged, 20, message="the seeder checked its copy")) == 1
    discarded = [t for t in supernode.tasks() if t["task_id"] == first["task_id"]][0]["discarded"]
    assert list(discarded.values()) == [1]

    third = get(pyz, f.url, str(tmp_path / "2.bin"), str(tmp_path / "p2"), supernode)
    assert sha256_file(str(tmp_path / "2.bin")) == f.sha256 and third["bytes_from_peers"] > 0
    task = [t for t in supernode.tasks() if t["task_id"] == first["task_id"]][0]
    assert task["discarded"] == discarded   # no failure this time
    assert origin.body_bytes("f.bin") == SIZE
    assert len(damage_logged()) == 1


@pytest.mark.time_limit(120)
def test_damage_done_while_the_supernode_was_down_is_repaired_after_its_restart(
        pyz, origin, supernodes, tmp_path):
    f = origin.add("f.bin", content(SIZE, seed=42))
    data_dir = str(tmp_path / "sn")
    supernode = supernodes(pyz, data_dir)
    first = get(pyz, f.url, str(tmp_path / "0.bin"), str(tmp_path / "p0"), supernode)
    supernode.stop()
    flip_byte(cached(supernode, first["task_id"]), 6 * PIECE)

    supernode = supernodes(pyz, data_dir)   # the default --scrub-rate: it finds it by itself
    wait_until(lambda: supernode.log_lines("damaged"), 20, message="the scrub found the damage")
    for i in (1, 2):
        result = get(pyz, f.url, str(tmp_path / ("%d.bin" % i)), str(tmp_path / ("p%d" % i)), supernode)
        assert sha256_file(str(tmp_path / ("%d.bin" % i))) == f.sha256
        assert result["bytes_from_source"] == 0
    assert origin.body_bytes("f.bin") == SIZE + PIECE
    assert len(supernode.log_lines("damaged")) == 1
    task = [t for t in supernode.tasks() if t["task_id"] == first["task_id"]][0]
    assert task["repaired_pieces"] == 1 and task["discarded"] == {}


@pytest.mark.time_limit(120)
def test_dfly_scrub_repairs_a_stopped_supernode_cache_and_exits_8_when_it_found_damage(
        pyz, origin, supernodes, tmp_path):
    f = origin.add("f.bin", content(SIZE, seed=43))
    data_dir = str(tmp_path / "sn")
    supernode = supernodes(pyz, data_dir, "--scrub-rate", "0")
    first = get(pyz, f.url, str(tmp_path / "0.bin"), str(tmp_path / "p0"), supernode)
    supernode.stop()
    flip_byte(cached(supernode, first["task_id"]), 7 * PIECE + 1)

    scrub = [sys.executable, pyz, "scrub", "--data-dir", data_dir]
    found = subprocess.run(scrub, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert found.returncode == 8, found.stderr
    assert "piece 7 damaged, repaired from the source" in found.stdout
    clean = subprocess.run(scrub, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert clean.returncode == 0 and "0 damaged" in clean.stdout
    assert sha256_file(cached(supernode, first["task_id"])) == f.sha256
    assert origin.body_bytes("f.bin") == SIZE + PIECE

    nothing = subprocess.run([sys.executable, pyz, "scrub", "--data-dir", str(tmp_path / "p0" / "x")],
                             capture_output=True, text=True, timeout=TIMEOUT_S)
    assert nothing.returncode == 2 and "no supernode or daemon cache" in nothing.stderr
    assert "Traceback" not in nothing.stderr


@pytest.mark.time_limit(120)
def test_a_flipped_byte_in_a_daemon_cache_is_repaired_through_p2p_not_from_the_origin(
        pyz, origin, supernodes, tmp_path):
    from daemons import registry_blob
    from processes import Process

    data = content(SIZE, seed=44)
    name, path, digest = registry_blob(origin, data)
    supernode = supernodes(pyz, str(tmp_path / "sn"), "--scrub-rate", "0")
    daemon_dir = str(tmp_path / "d")
    daemon = Process(pyz, "daemon", "--listen", "127.0.0.1:0", "--upload-listen", "127.0.0.1:0",
                     "--supernode", supernode.address, "--data-dir", daemon_dir, "--scrub-rate", "0",
                     "--heartbeat", "0.2s", "--registry-mirror", origin.url("").rstrip("/"))
    try:
        assert _daemon_get(daemon, path) == data   # through the daemon's mirror: now in its cache
        flip_byte(os.path.join(daemon_dir, "daemon", "cache", "sha256-" + digest.split(":")[1]),
                  4 * PIECE + 3)

        results = [get(pyz, origin.url(name), str(tmp_path / ("%d.bin" % i)), str(tmp_path / ("p%d" % i)),
                       supernode, "--seed-for", "0", "--digest", digest, "--identifier", digest)
                   for i in (1, 2)]
        for i, result in enumerate(results, 1):
            assert sha256_file(str(tmp_path / ("%d.bin" % i))) == digest.split(":")[1]
            assert result["bytes_from_source"] == 0

        def damage_logged():
            return [line for line in daemon.lines if "damaged" in line]
        wait_until(lambda: [line for line in daemon.lines if "repaired" in line], 20,
                   message="the daemon repaired its copy")
        assert len(damage_logged()) == 1
        discarded = [t for t in supernode.tasks() if t["task_id"] == results[0]["task_id"]][0]["discarded"]
        assert list(discarded.values()) == [1]

        last = get(pyz, origin.url(name), str(tmp_path / "3.bin"), str(tmp_path / "p3"), supernode,
                   "--seed-for", "0", "--digest", digest, "--identifier", digest)
        assert sha256_file(str(tmp_path / "3.bin")) == digest.split(":")[1] and last["bytes_from_peers"] > 0
        task = [t for t in supernode.tasks() if t["task_id"] == results[0]["task_id"]][0]
        assert task["discarded"] == discarded   # no failure since the repair
        assert _daemon_get(daemon, path) == data
        assert origin.body_bytes(name) == SIZE   # the repair came through P2P
        assert len(damage_logged()) == 1
    finally:
        assert daemon.stop() == 0


def _daemon_get(daemon, path: str) -> bytes:
    host, port = daemon.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200, response.status
        return response.read()
    finally:
        conn.close()
