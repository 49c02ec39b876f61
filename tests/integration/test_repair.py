"""A bad piece in a holder's cache is found, withdrawn, fetched again (one piece,
by Range) and offered again; it is never routed around for good, never served
once known bad, and never costs the origin a whole copy per download.

Real supernode, real clients, the real test origin counting bytes and Range
requests; the damage is one byte flipped in a cached file on disk."""
import hashlib
import io
import json
import logging
import os

import pytest
from daemons import fetch, registry_blob, stats
from helpers import MiB, content, sha256_file, wait_until

from dfly.errors import DigestMismatch
from dfly.peer.registry import blob_key
from dfly.peer.seeds import Seed
from dfly.protocol.messages import SUPERNODE, Failure, RegisterRequest, ScheduleRequest
from dfly.scrub import SCRUB_FOUND_DAMAGE, Pace
from dfly.scrub import run as run_scrub
from dfly.supernode.client import SupernodeClient

PIECE = MiB
SIZE = 8 * MiB


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def cached_data(supernode, task_id: str) -> str:
    return os.path.join(supernode.service.tasks_dir, task_id, "data")


def cached_once(origin, supernode, client_factory, downloads, seed: int):
    """The test file at the origin, and the first get through `supernode` (which caches it)."""
    f = origin.add("big.bin", content(SIZE, seed=seed))
    first = client_factory([supernode.address]).download(f.url, str(downloads / "first.bin"))
    return f, first


def mirroring_daemon(origin, supernode, daemons, data: bytes, **settings):
    """A daemon mirroring the origin's registry, `data` fetched as a blob through it once
    (so it is in its cache): (daemon, blob name at the origin, path, digest)."""
    name, path, digest = registry_blob(origin, data)
    holder = daemons.start(supernode=[supernode.address], registry_mirror=origin.url("").rstrip("/"),
                           scrub_rate=0, **settings)
    assert fetch(holder.address, "GET", path)[2] == data
    return holder, name, path, digest


def damage_lines(caplog, what: str = "damaged"):
    return [r.getMessage() for r in caplog.records if what in r.getMessage()]


def repair_counts(supernode) -> dict:
    """The supernode's repair counters, as /metrics shows them to an operator."""
    status, _, body = fetch(supernode.address, "GET", "/metrics")
    assert status == 200
    names = ("dfly_supernode_damaged_pieces_total", "dfly_supernode_repaired_pieces_total",
             'dfly_supernode_pieces_discarded_total{holder="supernode"}',
             'dfly_supernode_pieces_discarded_total{holder="peer"}')
    samples = dict(line.rsplit(" ", 1) for line in body.decode().splitlines()
                   if line and not line.startswith("#"))
    return {name.split("_total")[0].split("dfly_supernode_")[1] + name.split("_total")[1]:
            float(samples.get(name, 0)) for name in names}


@pytest.mark.time_limit(60)
def test_a_flipped_byte_in_the_supernode_cache_is_repaired_by_one_range_request(
        origin, supernode_factory, client_factory, downloads, caplog):
    caplog.set_level(logging.INFO, logger="dfly")
    supernode = supernode_factory(scrub_rate=0)
    f, first = cached_once(origin, supernode, client_factory, downloads, seed=25)
    assert first.bytes_from_source == 0 and origin.body_bytes("big.bin") == SIZE
    flip_byte(cached_data(supernode, first.task_id), 12345)   # piece 0

    results = [client_factory([supernode.address]).download(f.url, str(downloads / ("%d.bin" % i)))
               for i in range(3)]

    for i, result in enumerate(results):
        assert sha256_file(result.path) == f.sha256
        assert result.bytes_from_source == 0, "get %d went back to the source" % i
        assert result.bytes_from_supernode + result.bytes_from_peers == SIZE
    assert origin.body_bytes("big.bin") <= SIZE + PIECE   # one extra piece, not a copy per get
    ranges = [s.headers.get("Range") for s in origin.served("big.bin") if s.status == 206]
    assert ranges == ["bytes=0-%d" % (PIECE - 1)]
    assert len(damage_lines(caplog)) == 1
    task = supernode.service.task_status(first.task_id)
    assert task["repaired_pieces"] == 1
    assert task["discarded"] == {"supernode": 1}
    assert repair_counts(supernode) == {"damaged_pieces": 1, "repaired_pieces": 1,
                                        'pieces_discarded{holder="supernode"}': 1,
                                        'pieces_discarded{holder="peer"}': 0}
    with open(cached_data(supernode, first.task_id), "rb") as cached:
        assert hashlib.sha256(cached.read()).hexdigest() == f.sha256

    # The next get sees no failure at all.
    last = client_factory([supernode.address]).download(f.url, str(downloads / "last.bin"))
    assert sha256_file(last.path) == f.sha256
    assert supernode.service.task_status(first.task_id)["discarded"] == {"supernode": 1}


@pytest.mark.time_limit(60)
def test_damage_done_while_the_supernode_was_down_is_found_at_start_up_and_repaired_alone(
        origin, supernode_factory, client_factory, downloads, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dfly")
    data_dir = tmp_path / "sn"
    supernode = supernode_factory(data_dir=data_dir, scrub_rate=0)
    f, first = cached_once(origin, supernode, client_factory, downloads, seed=26)
    supernode.stop()
    flip_byte(cached_data(supernode, first.task_id), 3 * PIECE + 7)   # piece 3
    before = origin.body_bytes("big.bin")

    supernode = supernode_factory(data_dir=data_dir, scrub_rate=64 * MiB)
    wait_until(lambda: damage_lines(caplog), 20, message="the start-up scrub found the damage")
    results = [client_factory([supernode.address]).download(f.url, str(downloads / ("%d.bin" % i)))
               for i in range(3)]

    for result in results:
        assert sha256_file(result.path) == f.sha256
        assert result.bytes_from_source == 0
    assert origin.body_bytes("big.bin") - before == PIECE
    ranges = [s.headers.get("Range") for s in origin.served("big.bin") if s.status == 206]
    assert ranges == ["bytes=%d-%d" % (3 * PIECE, 4 * PIECE - 1)]
    assert len(damage_lines(caplog)) == 1
    task = supernode.service.task_status(first.task_id)
    assert task["repaired_pieces"] == 1 and task["discarded"] == {}
    counts = repair_counts(supernode)
    assert counts["damaged_pieces"] == 1 and counts["repaired_pieces"] == 1


@pytest.mark.time_limit(60)
def test_the_scrub_of_a_served_task_repairs_a_bad_piece_before_any_peer_meets_it(
        origin, supernode_factory, client_factory, downloads, caplog):
    caplog.set_level(logging.INFO, logger="dfly")
    supernode = supernode_factory(scrub_rate=0)
    f, first = cached_once(origin, supernode, client_factory, downloads, seed=27)
    flip_byte(cached_data(supernode, first.task_id), 5 * PIECE)

    wait_until(lambda: supernode.service.scrubber.scrub(first.task_id, Pace(0)), 10,
               message="the scrub ran once the fetch thread ended")
    wait_until(lambda: supernode.service.task_status(first.task_id)["repaired_pieces"] == 1, 10)

    last = client_factory([supernode.address]).download(f.url, str(downloads / "last.bin"))
    assert sha256_file(last.path) == f.sha256 and last.bytes_from_source == 0
    assert supernode.service.task_status(first.task_id)["discarded"] == {}
    assert origin.body_bytes("big.bin") == SIZE + PIECE
    assert len(damage_lines(caplog)) == 1


@pytest.mark.time_limit(60)
def test_a_piece_bad_in_the_cache_and_at_the_source_fails_the_task_with_a_digest_mismatch(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(scrub_rate=0)
    f, first = cached_once(origin, supernode, client_factory, downloads, seed=28)
    flip_byte(cached_data(supernode, first.task_id), 2 * PIECE)
    changed = bytearray(f.data)
    changed[2 * PIECE] ^= 0xFF
    origin.add("big.bin", bytes(changed))   # the origin's piece 2 is not the one recorded either

    target = downloads / "second.bin"
    with pytest.raises(DigestMismatch, match="piece 2"):
        client_factory([supernode.address], no_back_source=True).download(f.url, str(target))
    assert not target.exists()
    assert supernode.service.task_status(first.task_id)["state"] == "failed"


@pytest.mark.time_limit(60)
def test_an_origin_without_range_support_repairs_a_piece_by_reading_up_to_it(
        origin, supernode_factory, client_factory, downloads, caplog):
    caplog.set_level(logging.INFO, logger="dfly")
    supernode = supernode_factory(scrub_rate=0)
    f, first = cached_once(origin, supernode, client_factory, downloads, seed=29)
    flip_byte(cached_data(supernode, first.task_id), PIECE + 1)
    origin.no_ranges = True

    second = client_factory([supernode.address]).download(f.url, str(downloads / "second.bin"))
    assert sha256_file(second.path) == f.sha256 and second.bytes_from_source == 0
    assert origin.body_bytes("big.bin") <= 2 * SIZE
    assert any("ignores Range" in line for line in damage_lines(caplog, "Range"))
    assert supernode.service.task_status(first.task_id)["repaired_pieces"] == 1


@pytest.mark.time_limit(60)
def test_a_flipped_byte_in_a_daemon_cache_is_found_and_the_piece_fetched_again_through_p2p(
        origin, supernode_factory, daemons, client_factory, downloads, caplog):
    caplog.set_level(logging.INFO, logger="dfly")
    supernode = supernode_factory(scrub_rate=0)
    data = content(SIZE, seed=30)
    holder, name, path, digest = mirroring_daemon(origin, supernode, daemons, data, heartbeat_s=0.2)
    flip_byte(os.path.join(holder.cache.root, blob_key(digest)), 4 * PIECE + 3)

    def get(i):
        return client_factory([supernode.address]).download(
            origin.url(name), str(downloads / ("%d.bin" % i)), digest=digest, identifier=digest)

    first = get(0)
    assert sha256_file(first.path) == digest.split(":")[1] and first.bytes_from_source == 0
    assert first.bytes_from_peers > 0   # the daemon served it, and one piece came bad
    wait_until(lambda: stats(holder)["repaired_pieces"] == 1, 20, message="the daemon repaired it")
    assert stats(holder)["refetched"] == 0   # one piece fetched again, not the file
    discarded = supernode.service.task_status(first.task_id)["discarded"]
    assert discarded == {holder.p2p.peer_id: 1}

    for i in (1, 2):
        again = get(i)
        assert sha256_file(again.path) == digest.split(":")[1] and again.bytes_from_source == 0
    assert supernode.service.task_status(first.task_id)["discarded"] == discarded   # no failure since
    assert fetch(holder.address, "GET", path)[2] == data
    assert origin.body_bytes(name) == SIZE   # the origin served it once: the repair was P2P
    assert stats(holder)["damaged_pieces"] == 1
    assert len(damage_lines(caplog)) == 1
    metrics = fetch(holder.address, "GET", "/metrics")[2].decode().splitlines()
    assert {"dfly_daemon_damaged_pieces_total 1", "dfly_daemon_repaired_pieces_total 1"} <= set(metrics)
    assert repair_counts(supernode) == {"damaged_pieces": 0, "repaired_pieces": 0,
                                        'pieces_discarded{holder="supernode"}': 0,
                                        'pieces_discarded{holder="peer"}': 1}


@pytest.mark.time_limit(60)
def test_a_piece_the_supernode_cannot_read_is_withdrawn_and_fetched_again_while_the_rest_is_served(
        origin, supernode_factory, client_factory, downloads, caplog):
    caplog.set_level(logging.INFO, logger="dfly")
    supernode = supernode_factory(scrub_rate=0)
    f, first = cached_once(origin, supernode, client_factory, downloads, seed=31)
    os.truncate(cached_data(supernode, first.task_id), SIZE - PIECE // 2)   # the last piece is gone

    second = client_factory([supernode.address]).download(f.url, str(downloads / "second.bin"))
    assert sha256_file(second.path) == f.sha256 and second.bytes_from_source == 0
    assert [s.headers.get("Range") for s in origin.served("big.bin") if s.status == 206] == [
        "bytes=%d-%d" % (SIZE - PIECE, SIZE - 1)]
    assert len(damage_lines(caplog)) == 1 and "short piece" in damage_lines(caplog)[0]
    assert supernode.service.task_status(first.task_id)["repaired_pieces"] == 1


@pytest.mark.time_limit(60)
def test_the_daemon_scrub_finds_a_damaged_blob_and_fetches_it_again_through_p2p(
        origin, supernode_factory, daemons, caplog):
    caplog.set_level(logging.INFO, logger="dfly")
    supernode = supernode_factory(scrub_rate=0)
    data = content(SIZE, seed=32)
    holder, name, path, digest = mirroring_daemon(origin, supernode, daemons, data)
    flip_byte(os.path.join(holder.cache.root, blob_key(digest)), 7 * PIECE)

    assert holder.scrubber.scrub(blob_key(digest), Pace(0)) == [7]
    assert fetch(holder.address, "GET", path)[2] == data   # follows the repair, never bad bytes
    wait_until(lambda: stats(holder)["repaired_pieces"] == 1, 20, message="the daemon repaired it")
    assert holder.scrubber.scrub(blob_key(digest), Pace(0)) == []
    assert stats(holder)["refetched"] == 0
    assert origin.body_bytes(name) == SIZE
    assert len(damage_lines(caplog)) == 1


@pytest.mark.time_limit(60)
def test_a_damaged_blob_without_piece_digests_is_fetched_again_whole_through_p2p(
        origin, supernode_factory, daemons, caplog):
    caplog.set_level(logging.INFO, logger="dfly")
    supernode = supernode_factory(scrub_rate=0)
    data = content(SIZE, seed=35)
    holder, name, path, digest = mirroring_daemon(origin, supernode, daemons, data)
    seed = holder.seeds.get(blob_key(digest))
    holder.seeds.put(blob_key(digest), Seed(seed.url, seed.piece_size, seed.digest, seed.identifier))
    flip_byte(os.path.join(holder.cache.root, blob_key(digest)), 3)

    assert holder.scrubber.scrub(blob_key(digest), Pace(0)) == [-1]   # checked whole, by its digest
    wait_until(lambda: stats(holder)["refetched"] == 1, 20, message="the daemon fetched it again")
    assert fetch(holder.address, "GET", path)[2] == data
    assert holder.scrubber.scrub(blob_key(digest), Pace(0)) == []
    assert origin.body_bytes(name) == SIZE
    assert len(damage_lines(caplog)) == 1


@pytest.mark.time_limit(60)
def test_dfly_scrub_removes_a_damaged_file_from_a_stopped_daemon_cache(
        origin, supernode_factory, daemons, tmp_path):
    supernode = supernode_factory(scrub_rate=0)
    data = content(2 * PIECE, seed=33)
    data_dir = str(tmp_path / "holder")
    holder, name, path, digest = mirroring_daemon(origin, supernode, daemons, data, data_dir=data_dir)
    daemons.stop(holder)
    cached = os.path.join(data_dir, "daemon", "cache", blob_key(digest))
    seed = os.path.join(data_dir, "daemon", "seeds", blob_key(digest) + ".json")
    with open(seed) as f:
        assert len(json.load(f)["digests"]) == 2   # what the scrub checks the pieces against
    flip_byte(cached, PIECE + 5)

    out = io.StringIO()
    assert run_scrub(data_dir, 0, 5.0, out) == SCRUB_FOUND_DAMAGE
    assert "not matching their digests: 1;" in out.getvalue() and "removed" in out.getvalue()
    assert not os.path.exists(cached) and not os.path.exists(seed)
    assert run_scrub(data_dir, 0, 5.0, io.StringIO()) == 0


@pytest.mark.time_limit(60)
def test_a_copy_left_mid_write_is_checked_at_start_up_and_resumed_from_its_first_bad_piece(
        origin, supernode_factory, client_factory, downloads, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dfly")
    data_dir = tmp_path / "sn"
    supernode = supernode_factory(data_dir=data_dir, scrub_rate=0)
    f, first = cached_once(origin, supernode, client_factory, downloads, seed=34)
    supernode.stop()
    meta_path = os.path.join(supernode.service.tasks_dir, first.task_id, "meta.json")
    with open(meta_path) as meta_file:
        meta = json.load(meta_file)
    with open(meta_path, "w") as meta_file:   # as if the process died while writing piece 6
        json.dump(dict(meta, complete=False, digests=meta["digests"][:6]), meta_file)
    flip_byte(cached_data(supernode, first.task_id), 4 * PIECE + 10)   # a torn write
    before = origin.body_bytes("big.bin")

    supernode = supernode_factory(data_dir=data_dir, scrub_rate=0)   # checked even with the scrub off
    wait_until(lambda: damage_lines(caplog), 10, message="the start-up check found the torn piece")
    second = client_factory([supernode.address]).download(f.url, str(downloads / "second.bin"))

    assert sha256_file(second.path) == f.sha256
    assert [s.headers.get("Range") for s in origin.served("big.bin") if s.status == 206] == [
        "bytes=%d-" % (4 * PIECE)]
    assert origin.body_bytes("big.bin") - before == SIZE - 4 * PIECE
    assert len(damage_lines(caplog)) == 1


@pytest.mark.time_limit(60)
def test_false_reports_cost_one_read_of_a_good_piece_and_count_only_holders_that_exist(
        origin, supernode_factory, client_factory, downloads, caplog):
    caplog.set_level(logging.DEBUG, logger="dfly.supernode")
    supernode = supernode_factory(scrub_rate=0)
    f, first = cached_once(origin, supernode, client_factory, downloads, seed=36)
    liar = SupernodeClient(supernode.address, timeout_s=5)
    try:
        tid, _ = liar.register(RegisterRequest(url=f.url, peer_id="liar", peer_port=1,
                                               peer_host="127.0.0.1"))

        def report(num, holder):
            liar.schedule(tid, ScheduleRequest("liar", failed=[Failure(num, holder, "digest mismatch")],
                                               want=0))
        report(0, SUPERNODE)
        wait_until(lambda: damage_lines(caplog, "checked good"), 10, message="piece 0 checked")
        for _ in range(20):   # a flood against the piece just found good: not read again
            report(0, SUPERNODE)
        report(0, "no-such-peer")
        flip_byte(cached_data(supernode, first.task_id), 6 * PIECE)
        report(6, SUPERNODE)   # queued behind anything the flood queued
        wait_until(lambda: supernode.service.task_status(tid)["repaired_pieces"] == 1, 10)
    finally:
        liar.close()

    assert len(damage_lines(caplog, "checked good")) == 1
    assert supernode.service.task_status(tid)["discarded"] == {SUPERNODE: 22}
