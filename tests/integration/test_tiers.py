"""Supernode tiers: a downstream cluster fetches what it lacks from its upstream
cluster as a P2P peer of it, so the file crosses the link between regions
once; the region keeps serving its cache when the link is down; loops are refused."""
import socket
import threading

import pytest
from helpers import MiB, content, refused_address, reserve_ports, run_all, sha256_file, wait_until

from dfly.errors import DflyError
from dfly.supernode.client import SupernodeClient

SIZE = 9 * MiB   # a few pieces: the downstream offers the first while the rest arrives


def _tasks(supernode):
    client = SupernodeClient(supernode.address, timeout_s=5)
    try:
        return client.tasks()
    finally:
        client.close()


def _two_regions(supernode_factory, tmp_path, **downstream):
    upstream = supernode_factory(data_dir=tmp_path / "region-a")
    below = supernode_factory(data_dir=tmp_path / "region-b",
                              upstream_supernode=[upstream.address],
                              upstream_upload_listen="127.0.0.1:0", **downstream)
    return upstream, below


@pytest.mark.time_limit(60)
def test_four_gets_in_the_downstream_region_take_the_file_once_over_the_link(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    upstream, below = _two_regions(supernode_factory, tmp_path)
    src = origin.add("image.bin", content(SIZE, seed=1901))

    def get(i):
        client = client_factory([below.address], no_back_source=True)
        return client.download(src.url, str(downloads / ("get%d.bin" % i)), digest=src.digest)

    outcomes = run_all([lambda i=i: get(i) for i in range(4)], timeout=45)
    assert [error for _, error in outcomes] == [None] * 4
    for i in range(4):
        assert sha256_file(str(downloads / ("get%d.bin" % i))) == src.sha256
    assert origin.body_bytes("image.bin") == src.size   # the origin served it once
    up_task, = _tasks(upstream)
    assert up_task["served_bytes"] == src.size          # one copy crossed the link
    assert up_task["source_bytes"] == src.size
    down_task, = _tasks(below)
    assert down_task["source_bytes"] == src.size        # read from the upstream, once
    assert below.service.upstream.fallbacks == 0
    metrics = below.service.metrics.registry.exposition()
    assert "dfly_supernode_upstream_bytes_total %d" % src.size in metrics
    assert "dfly_supernode_upstream_fallbacks_total 0" in metrics


@pytest.mark.time_limit(60)
def test_the_downstream_region_serves_its_cache_while_the_upstream_and_origin_are_down(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    upstream, below = _two_regions(supernode_factory, tmp_path, revalidate_after_s=0)
    src = origin.add("kept.bin", content(3 * MiB, seed=1902))
    client_factory([below.address]).download(src.url, str(downloads / "one.bin"))
    upstream.stop()
    origin.stop()   # the link is down: nothing of region A answers

    result = client_factory([below.address], no_back_source=True).download(
        src.url, str(downloads / "two.bin"))
    assert sha256_file(str(downloads / "two.bin")) == src.sha256
    assert result.via == "p2p" and result.bytes_from_supernode == src.size


@pytest.mark.time_limit(60)
def test_the_downstream_region_serves_its_cache_while_only_the_upstream_is_down(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    upstream, below = _two_regions(supernode_factory, tmp_path, revalidate_after_s=0)
    src = origin.add("cached.bin", content(3 * MiB, seed=1915))
    client_factory([below.address]).download(src.url, str(downloads / "one.bin"))
    upstream.stop()

    result = client_factory([below.address], no_back_source=True).download(
        src.url, str(downloads / "two.bin"))
    assert sha256_file(str(downloads / "two.bin")) == src.sha256
    assert result.bytes_from_supernode == src.size
    assert origin.requests("cached.bin") == 1   # the cache, not a copy from the origin
    assert below.service.upstream.fallbacks == 0


@pytest.mark.time_limit(60)
def test_a_restarted_region_serves_its_cache_while_its_upstream_hangs_without_answering(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    upstream, below = _two_regions(supernode_factory, tmp_path)
    src = origin.add("hung.bin", content(2 * MiB, seed=1916))
    client_factory([below.address]).download(src.url, str(downloads / "one.bin"))
    below.stop()
    hung = socket.socket()   # accepts connections (the kernel does), never answers: a dead link
    try:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        again = supernode_factory(data_dir=tmp_path / "region-b", source_timeout_s=4.0,
                                  upstream_supernode=["127.0.0.1:%d" % hung.getsockname()[1]],
                                  upstream_upload_listen="127.0.0.1:0")
        result = client_factory([again.address], no_back_source=True).download(
            src.url, str(downloads / "two.bin"))
    finally:
        hung.close()
    assert sha256_file(str(downloads / "two.bin")) == src.sha256
    assert result.bytes_from_supernode == src.size and origin.requests("hung.bin") == 1


@pytest.mark.time_limit(60)
def test_a_finished_copy_is_revalidated_against_the_upstream_without_moving_it_again(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    upstream, below = _two_regions(supernode_factory, tmp_path, revalidate_after_s=0)
    src = origin.add("same.bin", content(3 * MiB, seed=1903))
    client_factory([below.address]).download(src.url, str(downloads / "one.bin"))
    client_factory([below.address]).download(src.url, str(downloads / "two.bin"))
    assert sha256_file(str(downloads / "two.bin")) == src.sha256
    assert _tasks(below)[0]["source_bytes"] == src.size   # the second get: a 304, no bytes
    assert _tasks(upstream)[0]["served_bytes"] == src.size   # none crossed the link either


@pytest.mark.time_limit(60)
def test_an_unreachable_upstream_falls_back_to_the_origin(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    with refused_address() as (host, port):
        below = supernode_factory(data_dir=tmp_path / "region-b",
                                  upstream_supernode=["%s:%d" % (host, port)],
                                  upstream_upload_listen="127.0.0.1:0")
        src = origin.add("direct.bin", content(2 * MiB, seed=1904))
        client_factory([below.address], no_back_source=True).download(
            src.url, str(downloads / "one.bin"))
    assert sha256_file(str(downloads / "one.bin")) == src.sha256
    assert origin.body_bytes("direct.bin") == src.size
    assert below.service.upstream.fallbacks == 1


@pytest.mark.time_limit(60)
def test_an_upstream_loop_is_refused_at_the_first_request(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    a_address, b_address = reserve_ports(2)
    supernode_factory(data_dir=tmp_path / "a", listen=a_address, upstream_supernode=[b_address],
                      upstream_upload_listen="127.0.0.1:0")
    supernode_factory(data_dir=tmp_path / "b", listen=b_address, upstream_supernode=[a_address],
                      upstream_upload_listen="127.0.0.1:0")
    src = origin.add("loop.bin", content(1 * MiB, seed=1905))
    with pytest.raises(DflyError, match="upstream loop"):
        client_factory([a_address], no_back_source=True).download(src.url, str(downloads / "x.bin"))
    assert origin.requests("loop.bin") == 0


def test_a_supernode_that_is_its_own_upstream_does_not_start(supernode_factory, tmp_path):
    address, = reserve_ports(1)
    with pytest.raises(ValueError, match="its own upstream"):
        supernode_factory(listen=address, upstream_supernode=[address])


@pytest.mark.time_limit(60)
def test_downstream_peers_get_pieces_while_the_upstream_is_still_fetching_the_file(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    upstream, below = _two_regions(supernode_factory, tmp_path)
    src = origin.add("slow.bin", content(8 * MiB, seed=1906))
    origin.fault("slow.bin", stall_after=3 * MiB)   # held there until released
    got = []
    client = client_factory([below.address], no_back_source=True)
    outcome = {}

    def get():
        try:
            outcome["result"] = client.download(
                src.url, str(downloads / "slow.bin"),
                progress=lambda done, total, split: got.append(done))
        except BaseException as e:   # handed to the test
            outcome["error"] = e

    worker = threading.Thread(target=get, name="test-slow-get", daemon=True)
    worker.start()
    try:
        wait_until(lambda: got and got[-1] >= 1 * MiB, timeout=30,
                   message="no piece reached the downstream peer while the origin was stalled")
        assert origin.body_bytes("slow.bin") < src.size
    finally:
        origin.release()
        worker.join(30)
    assert "error" not in outcome, outcome.get("error")
    assert sha256_file(str(downloads / "slow.bin")) == src.sha256


@pytest.mark.time_limit(60)
def test_a_plain_region_reaches_an_mtls_upstream_with_credentials_of_the_upstreams_ca(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    from certs import Certs

    from dfly.errors import TLSRefused
    certs = Certs(str(tmp_path / "certs"))
    upstream = supernode_factory(data_dir=tmp_path / "region-a", **certs.mtls("region-a"))
    entry = certs.host("region-b-entry")
    below = supernode_factory(data_dir=tmp_path / "region-b", upstream_supernode=[upstream.address],
                              upstream_upload_listen="127.0.0.1:0", upstream_tls_ca=certs.ca,
                              upstream_tls_cert=entry["tls_cert"], upstream_tls_key=entry["tls_key"])
    src = origin.add("private.bin", content(2 * MiB, seed=1908))
    client_factory([below.address], no_back_source=True).download(
        src.url, str(downloads / "one.bin"), digest=src.digest)
    assert sha256_file(str(downloads / "one.bin")) == src.sha256

    # Only the CA, no certificate the upstream accepts: refused, said so, and the origin is
    # not used behind the upstream's back (a refusal is not an outage).
    stranger = supernode_factory(data_dir=tmp_path / "region-c", upstream_supernode=[upstream.address],
                                 upstream_upload_listen="127.0.0.1:0", upstream_tls_ca=certs.ca)
    other = origin.add("other.bin", content(1 * MiB, seed=1909))
    with pytest.raises(DflyError, match="TLS") as caught:
        client_factory([stranger.address], no_back_source=True).download(
            other.url, str(downloads / "two.bin"))
    assert not isinstance(caught.value, TLSRefused)   # the downstream's own link is fine
    assert origin.requests("other.bin") == 0


@pytest.mark.time_limit(60)
def test_three_tiers_pass_the_file_down_once_each_and_a_hop_limit_refuses_a_longer_chain(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    top = supernode_factory(data_dir=tmp_path / "a", upstream_max_hops=2)
    middle = supernode_factory(data_dir=tmp_path / "b", upstream_supernode=[top.address],
                               upstream_upload_listen="127.0.0.1:0")
    bottom = supernode_factory(data_dir=tmp_path / "c", upstream_supernode=[middle.address],
                               upstream_upload_listen="127.0.0.1:0")
    src = origin.add("deep.bin", content(3 * MiB, seed=1910))
    client_factory([bottom.address], no_back_source=True).download(
        src.url, str(downloads / "deep.bin"), digest=src.digest)
    assert sha256_file(str(downloads / "deep.bin")) == src.sha256
    assert origin.body_bytes("deep.bin") == src.size
    assert [t["served_bytes"] for t in _tasks(top) + _tasks(middle)] == [src.size] * 2

    deeper = supernode_factory(data_dir=tmp_path / "d", upstream_supernode=[bottom.address],
                               upstream_upload_listen="127.0.0.1:0")
    other = origin.add("deeper.bin", content(1 * MiB, seed=1911))
    with pytest.raises(DflyError, match="too many supernode tiers"):
        client_factory([deeper.address], no_back_source=True).download(
            other.url, str(downloads / "deeper.bin"))
    assert origin.requests("deeper.bin") == 0


@pytest.mark.time_limit(90)
def test_a_downstream_cluster_of_two_members_takes_the_file_once_over_the_link(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    upstream = supernode_factory(data_dir=tmp_path / "region-a")
    members = reserve_ports(2)
    below = [supernode_factory(data_dir=tmp_path / ("region-b%d" % i), listen=address,
                               cluster=members, cluster_secret="tiers-test-secret-0123456789",
                               member_dead_after_s=30.0,   # no member taken for dead under load
                               upstream_supernode=[upstream.address],
                               upstream_upload_listen="127.0.0.1:0")
             for i, address in enumerate(members)]
    src = origin.add("cluster.bin", content(6 * MiB, seed=1912))

    def get(i):
        client = client_factory(members[i % 2:] + members[:i % 2], no_back_source=True)
        return client.download(src.url, str(downloads / ("c%d.bin" % i)), digest=src.digest)

    outcomes = run_all([lambda i=i: get(i) for i in range(4)], timeout=60)
    assert [error for _, error in outcomes] == [None] * 4
    for i in range(4):
        assert sha256_file(str(downloads / ("c%d.bin" % i))) == src.sha256
    assert origin.body_bytes("cluster.bin") == src.size
    up_task, = _tasks(upstream)
    assert src.size <= up_task["served_bytes"] <= src.size * 1.25   # about one copy
    assert sum(m.service.upstream.fallbacks for m in below) == 0


@pytest.mark.time_limit(60)
def test_a_file_changed_at_the_origin_reaches_the_downstream_region_at_its_next_revalidation(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    upstream = supernode_factory(data_dir=tmp_path / "region-a", revalidate_after_s=0)
    below = supernode_factory(data_dir=tmp_path / "region-b", upstream_supernode=[upstream.address],
                              upstream_upload_listen="127.0.0.1:0", revalidate_after_s=0)
    old = origin.add("moving.bin", content(2 * MiB, seed=1913))
    client_factory([below.address]).download(old.url, str(downloads / "old.bin"))
    new = origin.add("moving.bin", content(2 * MiB, seed=1914))   # new bytes, ETag and date

    client_factory([below.address], no_back_source=True).download(
        new.url, str(downloads / "new.bin"), digest=new.digest)
    assert sha256_file(str(downloads / "new.bin")) == new.sha256
