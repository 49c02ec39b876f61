"""Rate limits hold: a capped source or a capped client cannot go faster than
its cap. Only lower bounds on time, with room to spare; nothing asserts speed."""
import time

import pytest
from helpers import MiB, content, sha256_file

from dfly.supernode.client import SupernodeClient

RATE = 2 * MiB   # bytes per second; buckets start with one second's worth


@pytest.mark.time_limit(30)
def test_source_rate_limit_caps_how_fast_the_supernode_reads_the_origin(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(source_rate_limit=RATE)
    src = origin.add("capped.bin", content(5 * MiB, seed=40))
    started = time.monotonic()
    client_factory([supernode.address]).download(src.url, str(downloads / "capped.bin"))
    elapsed = time.monotonic() - started
    assert sha256_file(str(downloads / "capped.bin")) == src.sha256
    # (5 MiB - a 2 MiB burst) at 2 MiB/s is 1.5 s at the very least
    assert elapsed >= 1.2, "source read at %.1f MiB/s" % (src.size / MiB / elapsed)


@pytest.mark.time_limit(30)
def test_client_rate_limit_caps_a_p2p_download(origin, supernode, client_factory, downloads):
    src = origin.add("capped.bin", content(5 * MiB, seed=41))
    client_factory([supernode.address]).download(src.url, str(downloads / "warm.bin"))   # cache it
    started = time.monotonic()
    client_factory([supernode.address], rate_limit=RATE).download(src.url,
                                                                  str(downloads / "capped.bin"))
    elapsed = time.monotonic() - started
    assert sha256_file(str(downloads / "capped.bin")) == src.sha256
    assert elapsed >= 1.2, "client read at %.1f MiB/s" % (src.size / MiB / elapsed)


@pytest.mark.time_limit(30)
def test_client_rate_limit_caps_a_download_from_the_source(origin, client_factory, downloads):
    src = origin.add("capped.bin", content(5 * MiB, seed=42))
    started = time.monotonic()
    client_factory([], rate_limit=RATE).download(src.url, str(downloads / "capped.bin"))
    elapsed = time.monotonic() - started
    assert sha256_file(str(downloads / "capped.bin")) == src.sha256
    assert elapsed >= 1.2, "client read at %.1f MiB/s" % (src.size / MiB / elapsed)


@pytest.mark.time_limit(30)
def test_a_slow_origin_that_keeps_sending_is_not_cut_off_by_the_source_timeout(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(source_timeout_s=1.0)
    src = origin.add("slow.bin", content(MiB, seed=43))
    # about 1.2 s in all, more than the timeout, but never 1 s without a byte
    origin.fault("slow.bin", chunk_bytes=128 * 1024, chunk_delay_s=0.15)
    result = client_factory([supernode.address]).download(src.url, str(downloads / "slow.bin"))
    assert sha256_file(str(downloads / "slow.bin")) == src.sha256
    assert result.via == "p2p"


@pytest.mark.time_limit(60)
def test_a_peer_whose_workers_stay_busy_past_the_peer_ttl_is_not_forgotten(
        origin, supernode_factory, client_factory, downloads):
    """Every worker busy on a slow piece means no schedule call is due, yet the
    supernode forgets peers silent for --peer-ttl: the downloader keeps calling."""
    supernode = supernode_factory(peer_ttl_s=3.0)
    src = origin.add("slow.bin", content(2 * MiB, seed=43))   # two pieces, both at once
    observer = SupernodeClient(supernode.address)
    known = []

    def progress(done, total, split):   # at each verified piece: does the supernode know us?
        known.append([task["peers"] for task in observer.tasks()])

    try:
        client_factory([supernode.address], rate_limit=400 * 1024, parallel=2).download(   # 5 s
            src.url, str(downloads / "slow.bin"), progress=progress)
    finally:
        observer.close()
    assert sha256_file(str(downloads / "slow.bin")) == src.sha256
    assert known and all(peers == [1] for peers in known), known
