"""Several peers, one supernode, one origin: the file leaves the origin once,
peers serve each other, and a lying or dying peer costs a retry, not the download."""
import pytest
from helpers import FakePeer, MiB, content, leftovers, run_all, sha256_file, wait_until

from dfly.protocol.messages import RegisterRequest, ScheduleRequest
from dfly.protocol.pieces import piece_range

PEERS = 5


@pytest.mark.time_limit(60)
def test_concurrent_downloads_take_the_file_from_the_origin_once_and_from_each_other(
        origin, supernode, sn_client, client_factory, downloads):
    src = origin.add("big.bin", content(40 * MiB, seed=1))   # forty 1 MiB pieces
    clients = [client_factory([supernode.address]) for _ in range(PEERS)]
    targets = [str(downloads / ("copy%d.bin" % i)) for i in range(PEERS)]

    outcomes = run_all([lambda c=c, t=t: c.download(src.url, t, digest=src.digest)
                        for c, t in zip(clients, targets)], timeout=50)

    errors = [e for _, e in outcomes if e is not None]
    assert not errors, errors
    results = [r for r, _ in outcomes]
    for target, result in zip(targets, results):
        assert sha256_file(target) == src.sha256
        assert result.length == src.size and result.via == "p2p"
        assert result.bytes_from_source + result.bytes_from_supernode + result.bytes_from_peers \
            == src.size
    assert origin.body_bytes("big.bin") == src.size
    assert origin.requests("big.bin") == 1
    # The supernode serves a piece only when no peer has it or is fetching it: its
    # egress stays near one copy (measured 1.00-1.03), the rest goes peer to peer.
    from_supernode = sum(r.bytes_from_supernode for r in results)
    assert src.size <= from_supernode <= 1.25 * src.size, from_supernode / src.size
    assert sn_client.task(results[0].task_id)["served_bytes"] == from_supernode
    assert sum(r.bytes_from_peers for r in results) == PEERS * src.size - from_supernode
    assert len({r.task_id for r in results}) == 1
    assert leftovers(str(downloads)) == []


def _fake_holder(origin, sn_client, name, size, mode):
    """Register a FakePeer as holding every piece of `name` once the supernode has it all."""
    src = origin.add(name, content(size, seed=2))
    geometry = {}
    fake = FakePeer(mode, lambda n: piece_range(n, geometry["length"], geometry["piece_size"])[1])
    tid, _ = sn_client.register(RegisterRequest(url=src.url, peer_id="fake-" + mode,
                                                peer_port=fake.port, peer_host="127.0.0.1"))
    task = wait_until(lambda: (lambda t: t if t["state"] == "done" else None)(sn_client.task(tid)),
                      timeout=10, message="supernode cached the source")
    geometry.update(length=task["length"], piece_size=task["piece_size"])
    sn_client.schedule(tid, ScheduleRequest("fake-" + mode, done=list(range(task["piece_count"])),
                                            want=0))
    return src, fake, tid


@pytest.mark.time_limit(30)
def test_download_is_correct_despite_a_peer_serving_corrupt_pieces_and_the_liar_is_dropped(
        origin, supernode, sn_client, client_factory, downloads):
    src, liar, tid = _fake_holder(origin, sn_client, "lied-about.bin", 24 * MiB, "corrupt")
    try:
        # The first report of a corrupt piece makes the liar suspect: the supernode
        # sends no one to it until it is heard from (it never is), so only the pieces
        # already on their way from it (a worker's worth) are lost.
        for name in ("a.bin", "b.bin"):
            result = client_factory([supernode.address]).download(src.url, str(downloads / name))
            assert sha256_file(str(downloads / name)) == src.sha256
            assert result.task_id == tid
            assert result.bytes_from_peers == 0   # nothing the liar sent was kept
        assert 1 <= liar.request_count <= 4, liar.request_count
        assert result.bytes_discarded == 0   # b.bin never asked it
        asked = liar.request_count

        last = client_factory([supernode.address]).download(src.url, str(downloads / "c.bin"))
        assert sha256_file(str(downloads / "c.bin")) == src.sha256
        assert last.bytes_from_peers == 0
        assert liar.request_count == asked, "the supernode still sends peers to the liar"
    finally:
        liar.stop()


@pytest.mark.time_limit(30)
def test_download_completes_when_a_peer_dies_mid_piece(origin, supernode, sn_client,
                                                        client_factory, downloads):
    src, dier, _ = _fake_holder(origin, sn_client, "half-served.bin", 24 * MiB, "die")
    try:
        result = client_factory([supernode.address]).download(src.url, str(downloads / "c.bin"))
        assert dier.request_count > 0, "the dying peer was never asked, so nothing was tested"
        assert sha256_file(str(downloads / "c.bin")) == src.sha256
        assert result.bytes_from_supernode == src.size
        assert leftovers(str(downloads)) == []
    finally:
        dier.stop()
