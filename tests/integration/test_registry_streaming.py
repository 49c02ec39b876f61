"""A blob pulled through the mirror streams to the client while its pieces
arrive: the first bytes go out before the download has finished, requests for
the same blob share one download, ranges are served once their pieces are
here, and a blob that fails its digest is cut short, never sent whole.

The upstream is the test origin laid out as a registry, stalled part-way
through the blob (until the test releases it), so "before the download
finished" is a state the test holds, not a race it hopes to win."""
import hashlib
import http.client
import threading

import pytest
from daemons import registry_blob, stats
from helpers import MiB, content

from dfly.protocol.address import parse_address
from dfly.protocol.pieces import MIN_PIECE_SIZE
from dfly.protocol.task import task_id

PIECE = MIN_PIECE_SIZE   # what files this small are cut into


def _open(running, path: str, headers=None):
    """Send a GET and return (connection, response) with the status line read, body not."""
    host, port = parse_address(running.address, 0)
    conn = http.client.HTTPConnection(host, port, timeout=20)
    conn.request("GET", path, headers=headers or {})
    return conn, conn.getresponse()


def _task_state(sn_client, digest: str) -> str:
    return sn_client.task(task_id("", (), digest, digest))["state"]


def _gets(origin, name: str) -> int:
    return len([s for s in origin.served(name) if s.method == "GET"])


@pytest.mark.time_limit(60)
def test_a_big_blob_starts_reaching_clients_before_its_download_finished_and_one_download_serves_all(
        origin, supernode, sn_client, daemons):
    data = content(40 * MiB, seed=61)
    name, path, digest = registry_blob(origin, data)
    origin.fault(name, stall_after=3 * PIECE)   # the rest comes when the test says so
    running = daemons.start(supernode=[supernode.address], registry_mirror=origin.url("").rstrip("/"))

    opened = [_open(running, path) for _ in range(2)]   # two clients, one blob
    try:
        firsts = []
        for _, response in opened:
            assert response.status == 200
            assert int(response.getheader("Content-Length")) == len(data)
            assert response.getheader("Docker-Content-Digest") == digest
            firsts.append(response.read(MiB))
        assert firsts == [data[:MiB]] * 2
        assert _task_state(sn_client, digest) == "running"   # the source is still held back
        assert stats(running)["downloads"] == 0 and stats(running)["cache_files"] == 0

        origin.release()
        for first, (_, response) in zip(firsts, opened):
            assert hashlib.sha256(first + response.read()).hexdigest() == digest[7:]
    finally:
        for conn, _ in opened:
            conn.close()
    assert _gets(origin, name) == 1
    after = stats(running)
    assert after["downloads"] == 1 and after["cache_files"] == 1


@pytest.mark.time_limit(60)
def test_a_range_of_a_blob_still_downloading_is_served_once_its_pieces_are_here(
        origin, supernode, daemons):
    data = content(6 * PIECE + 123, seed=62)
    name, path, digest = registry_blob(origin, data)
    origin.fault(name, stall_after=2 * PIECE + 100)
    running = daemons.start(supernode=[supernode.address], registry_mirror=origin.url("").rstrip("/"))

    head_conn, head = _open(running, path)   # starts the download; its first piece is here
    try:
        assert head.status == 200
        assert head.read(100) == data[:100]
        conn, response = _open(running, path, {"Range": "bytes=100-%d" % (PIECE + 99)})
        assert response.status == 206 and response.read() == data[100:PIECE + 100]
        conn.close()

        tail = {}
        tail_asked = threading.Event()

        def read_tail():
            c, r = _open(running, path, {"Range": "bytes=-1000"})
            tail_asked.set()
            tail["status"], tail["body"] = r.status, r.read()
            c.close()

        reader = threading.Thread(target=read_tail, name="test-tail-reader", daemon=True)
        reader.start()
        assert not tail_asked.wait(0.3) and "body" not in tail   # the end waits for the whole blob
        origin.release()
        reader.join(20)
        assert tail == {"status": 206, "body": data[-1000:]}
        assert head.read() == data[100:]
    finally:
        head_conn.close()
    assert _gets(origin, name) == 1


@pytest.mark.time_limit(60)
def test_a_blob_failing_its_digest_mid_stream_is_cut_short_never_sent_whole(
        origin, supernode, sn_client, daemons):
    wanted = content(5 * PIECE, seed=63)
    impostor = content(5 * PIECE, seed=64)
    name, path, digest = registry_blob(origin, wanted, served=impostor)
    origin.fault(name, stall_after=2 * PIECE)
    running = daemons.start(supernode=[supernode.address], registry_mirror=origin.url("").rstrip("/"))

    conn, response = _open(running, path)
    try:
        assert response.status == 200 and int(response.getheader("Content-Length")) == len(wanted)
        got = response.read(MiB)   # per-piece verified bytes go out while the rest is held back
        assert got and _task_state(sn_client, digest) == "running"
        origin.release()
        with pytest.raises(http.client.IncompleteRead) as cut:
            response.read()
        got += cut.value.partial
    finally:
        conn.close()
    assert len(got) < len(impostor) - PIECE + 1   # the last piece never left
    assert stats(running)["cache_files"] == 0
    status_conn, again = _open(running, path)   # the failed task: a clean error at once
    try:
        assert again.status == 502 and b"DIGEST_INVALID" in again.read()
    finally:
        status_conn.close()
