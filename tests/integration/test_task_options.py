"""What a peer says about a task: filtered query parameters, headers for the
source, and the addresses peers and the supernode advertise."""
import pytest
from helpers import MiB, content, run_all, sha256_file

from dfly.supernode.client import SupernodeClient


def test_urls_differing_only_in_a_filtered_parameter_are_one_task_fetched_once(
        origin, supernode, client_factory, downloads):
    src = origin.add("signed.bin", content(6 * MiB, seed=31))
    urls = [src.url + "?token=%d&v=1" % i for i in range(3)]
    clients = [client_factory([supernode.address]) for _ in urls]
    outcomes = run_all([lambda c=c, u=u, i=i: c.download(u, str(downloads / ("o%d" % i)),
                                                         filters=["token"])
                        for i, (c, u) in enumerate(zip(clients, urls))], timeout=30)
    assert [e for _, e in outcomes if e is not None] == []
    assert len({r.task_id for r, _ in outcomes}) == 1
    assert origin.requests("signed.bin") == 1
    for i in range(3):
        assert sha256_file(str(downloads / ("o%d" % i))) == src.sha256


def test_unfiltered_parameters_still_make_distinct_tasks(origin, supernode, client_factory, downloads):
    src = origin.add("f.bin", content(MiB, seed=32))
    client = client_factory([supernode.address])
    first = client.download(src.url + "?v=1", str(downloads / "a"), filters=["token"])
    second = client.download(src.url + "?v=2", str(downloads / "b"), filters=["token"])
    assert first.task_id != second.task_id


def test_headers_given_to_get_reach_the_source_through_the_supernode(
        origin, supernode, client_factory, downloads):
    src = origin.add("private.bin", content(MiB, seed=33))
    client_factory([supernode.address]).download(
        src.url, str(downloads / "p"), headers={"Authorization": "Bearer abc", "X-Team": "infra"})
    seen = origin.served("private.bin")[0].headers
    assert seen.get("Authorization") == "Bearer abc"
    assert seen.get("X-Team") == "infra"


@pytest.mark.parametrize("advertised, trusted, from_peers", [
    ("127.0.0.1", False, True), ("127.0.0.2", True, False),
    ("127.0.0.2", False, True),   # not believed: offered where it registered from
])
def test_a_peer_is_offered_to_others_at_the_address_it_advertises_when_the_supernode_trusts_it(
        origin, supernode_factory, client_factory, downloads, advertised, trusted, from_peers):
    # The uploader listens on 127.0.0.1 only: advertised as 127.0.0.2 it cannot be reached.
    supernode = supernode_factory(trust_peer_hosts=trusted)
    src = origin.add("f.bin", content(9 * MiB, seed=34))
    seed = client_factory([supernode.address], advertise=advertised, seed_for_s=60)
    seed.download(src.url, str(downloads / "seed"), digest=src.digest)
    late = client_factory([supernode.address])
    result = late.download(src.url, str(downloads / "late"), digest=src.digest)
    assert sha256_file(str(downloads / "late")) == src.sha256
    assert (result.bytes_from_peers == src.size) is from_peers
    assert (result.bytes_from_supernode == src.size) is not from_peers


def test_a_supernode_advertising_another_address_sends_peers_there(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    src = origin.add("f.bin", content(5 * MiB, seed=35))
    real = supernode_factory(data_dir=tmp_path / "real")
    # A second supernode whose clients are told to fetch pieces from the first one.
    front = supernode_factory(data_dir=tmp_path / "front", advertise=real.address)
    # as if `real` were `front` under another address: its piece tokens open `real`'s pieces
    front.service.piece_key = real.service.piece_key
    client_factory([real.address]).download(src.url, str(downloads / "warm"), digest=src.digest)
    result = client_factory([front.address]).download(src.url, str(downloads / "x"),
                                                      digest=src.digest)
    assert result.bytes_from_supernode == src.size
    assert origin.requests("f.bin") == 2    # each supernode fetched once
    real_client = SupernodeClient(real.address, timeout_s=5)
    try:
        served = sum(t["served_bytes"] for t in real_client.tasks())
    finally:
        real_client.close()
    assert served == 2 * src.size           # the second client's pieces came from `real`


def test_a_swarm_that_keeps_failing_a_piece_falls_back_to_the_source(
        origin, supernode_factory, client_factory, downloads):
    from helpers import refused_address
    src = origin.add("f.bin", content(5 * MiB, seed=36))
    with refused_address() as (host, port):
        # Misconfigured: peers are sent to an address where nothing listens.
        broken = supernode_factory(advertise="%s:%d" % (host, port))
        result = client_factory([broken.address]).download(src.url, str(downloads / "f"),
                                                           digest=src.digest)
    assert result.via == "source"
    assert sha256_file(str(downloads / "f")) == src.sha256
