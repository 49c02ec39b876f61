"""The supernode's cache on disk: a finished task survives a restart and is
revalidated with a 304 instead of re-read; a half-read one resumes with Range;
a full cache drops its least recently used finished task."""
import os

import pytest
from helpers import MiB, content, failed_fetch_kept, sha256_file, wait_until

from dfly.errors import SourceError
from dfly.protocol.pieces import MIN_PIECE_SIZE
from dfly.supernode.client import SupernodeClient

PIECE = MIN_PIECE_SIZE   # what files this small are cut into


@pytest.mark.time_limit(30)
def test_a_restarted_supernode_serves_a_cached_task_after_a_304_without_rereading_the_body(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    cache = tmp_path / "sn-cache"
    src = origin.add("cached.bin", content(10 * MiB, seed=20))
    first = supernode_factory(data_dir=cache)
    client_factory([first.address]).download(src.url, str(downloads / "one.bin"))
    assert origin.body_bytes("cached.bin") == src.size
    first.stop()

    second = supernode_factory(data_dir=cache)
    result = client_factory([second.address]).download(src.url, str(downloads / "two.bin"))
    assert sha256_file(str(downloads / "two.bin")) == src.sha256
    assert result.via == "p2p" and result.bytes_from_supernode == src.size
    assert origin.body_bytes("cached.bin") == src.size, "the body was read again"
    revalidation = origin.served("cached.bin")[-1]
    assert revalidation.status == 304
    assert revalidation.headers.get("If-None-Match") == src.etag


@pytest.mark.time_limit(30)
def test_a_restarted_supernode_refetches_a_cached_task_whose_source_changed(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    cache = tmp_path / "sn-cache"
    origin.add("changing.bin", content(5 * MiB, seed=21))
    first = supernode_factory(data_dir=cache)
    client_factory([first.address]).download(origin.url("changing.bin"), str(downloads / "old.bin"))
    first.stop()

    new = origin.add("changing.bin", content(6 * MiB, seed=22))
    second = supernode_factory(data_dir=cache)
    client_factory([second.address]).download(new.url, str(downloads / "new.bin"))
    assert sha256_file(str(downloads / "new.bin")) == new.sha256
    assert origin.served("changing.bin")[-1].status == 200


@pytest.mark.time_limit(30)
def test_a_source_cut_mid_transfer_is_resumed_with_a_range_request(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(failure_ttl_s=0)
    src = origin.add("resumed.bin", content(3 * PIECE, seed=23))
    origin.fault("resumed.bin", die_after=PIECE + PIECE // 2)

    failed_fetch_kept(supernode.address, src.url, digest=src.digest)   # the digest: part of the task's id
    first_fetch = origin.body_bytes("resumed.bin")
    assert PIECE < first_fetch < src.size

    origin.heal("resumed.bin")
    result = client_factory([supernode.address]).download(src.url, str(downloads / "whole.bin"),
                                                          digest=src.digest)
    assert sha256_file(str(downloads / "whole.bin")) == src.sha256
    assert result.bytes_from_supernode == src.size
    resume = origin.served("resumed.bin")[-1]
    assert resume.status == 206
    assert resume.headers.get("Range") == "bytes=%d-" % PIECE
    assert resume.headers.get("If-Range") == src.etag
    second_fetch = origin.body_bytes("resumed.bin") - first_fetch
    assert second_fetch == src.size - PIECE < src.size


@pytest.mark.time_limit(30)
def test_a_failed_task_dropped_from_memory_keeps_its_whole_pieces_for_the_next_get(
        origin, supernode_factory, client_factory, downloads):
    """The get whose source was cut has left, no peer stays, and the failure is
    forgotten (--failure-ttl 0): the janitor drops the task, but not the pieces it
    cut: the next get resumes them by Range, as after a restart."""
    supernode = supernode_factory(failure_ttl_s=0)
    src = origin.add("dropped.bin", content(3 * PIECE, seed=26))
    origin.fault("dropped.bin", die_after=2 * PIECE + 100)
    with pytest.raises(SourceError):
        client_factory([supernode.address]).download(src.url, str(downloads / "cut.bin"))
    first_fetch = origin.body_bytes("dropped.bin")
    client = SupernodeClient(supernode.address, timeout_s=5)
    try:
        wait_until(lambda: client.tasks() == [], timeout=10, message="the janitor dropped the task")
    finally:
        client.close()

    _resumed_at_the_third_piece(origin, src, "dropped.bin", first_fetch, client_factory([supernode.address]),
                                downloads)


@pytest.mark.time_limit(30)
def test_the_pieces_a_dropped_task_keeps_count_against_the_cache_size_at_once(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    """Kept pieces are bounded like the cache: a client whose sources all fail part
    way fills no more than --cache-size, with no finished fetch to trigger eviction."""
    cache = tmp_path / "sn-cache"
    supernode = supernode_factory(data_dir=cache, failure_ttl_s=0, cache_size=int(1.5 * MiB))
    src = origin.add("big-cut.bin", content(3 * PIECE, seed=27))
    origin.fault("big-cut.bin", die_after=2 * PIECE + 100)
    with pytest.raises(SourceError):
        client_factory([supernode.address]).download(src.url, str(downloads / "cut.bin"))
    tasks = os.path.join(str(cache), "tasks")
    wait_until(lambda: os.listdir(tasks) == [], timeout=10,
               message="the 2 MiB of pieces kept were evicted to fit 1.5 MiB")


@pytest.mark.time_limit(30)
def test_a_restarted_supernode_resumes_a_half_fetched_cache_with_a_range_request(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    cache = tmp_path / "sn-cache"
    src = origin.add("resumed.bin", content(3 * PIECE, seed=24))
    origin.fault("resumed.bin", die_after=2 * PIECE + 100)
    first = supernode_factory(data_dir=cache)
    with pytest.raises(SourceError):
        client_factory([first.address]).download(src.url, str(downloads / "cut.bin"))
    first.stop()
    first_fetch = origin.body_bytes("resumed.bin")

    second = supernode_factory(data_dir=cache)
    _resumed_at_the_third_piece(origin, src, "resumed.bin", first_fetch, client_factory([second.address]),
                                downloads)


def _resumed_at_the_third_piece(origin, src, name, first_fetch, client, downloads):
    """With the origin healed, `client` gets the whole file, and the supernode asked
    the origin only for what it lacked: the third piece, by Range."""
    origin.heal(name)
    client.download(src.url, str(downloads / "whole.bin"))
    assert sha256_file(str(downloads / "whole.bin")) == src.sha256
    assert origin.served(name)[-1].headers.get("Range") == "bytes=%d-" % (2 * PIECE)
    assert origin.body_bytes(name) - first_fetch == PIECE


@pytest.mark.time_limit(30)
def test_a_full_cache_evicts_the_least_recently_used_finished_task(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    cache = tmp_path / "sn-cache"
    supernode = supernode_factory(data_dir=cache, cache_size=int(1.5 * MiB))
    a = origin.add("a.bin", content(MiB, seed=25))
    b = origin.add("b.bin", content(MiB, seed=26))
    client = client_factory([supernode.address])

    first = client.download(a.url, str(downloads / "a.bin"))
    folder_a = cache / "tasks" / first.task_id
    assert folder_a.is_dir()
    second = client.download(b.url, str(downloads / "b.bin"))
    folder_b = cache / "tasks" / second.task_id

    wait_until(lambda: not folder_a.exists(), timeout=10, message="task a evicted")
    assert folder_b.is_dir() and os.path.getsize(str(folder_b / "data")) == b.size

    again = client.download(a.url, str(downloads / "a-again.bin"))   # re-read from the origin
    assert again.task_id == first.task_id
    assert sha256_file(str(downloads / "a-again.bin")) == a.sha256
    assert origin.body_bytes("a.bin") == 2 * a.size
