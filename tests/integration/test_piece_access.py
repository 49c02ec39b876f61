"""Piece access is authorised (issue 15, item 2): an uploader and the supernode
serve a task's pieces only with a piece token the supernode minted for that
task and requester, not yet expired (protocol/piecetoken.py)."""
import dataclasses
import os
import time

import pytest
from helpers import MiB, content, http_status, peer_secret_of, piece_access, wait_until

from dfly.peer.piece_client import PieceFailed, PieceFetcher
from dfly.protocol import piecetoken
from dfly.protocol.messages import SUPERNODE, RegisterRequest, ScheduleRequest


@pytest.fixture
def seeded(origin, supernode, client_factory, downloads):
    """A get that holds every piece of a file and serves them (its uploader's address)."""
    src = origin.add("private.bin", content(3 * MiB, seed=31))
    seeder = client_factory([supernode.address], seed_for_s=60)
    result = seeder.download(src.url, str(downloads / "private.bin"))
    return seeder, result.task_id, src


def _status(address, tid, query="", headers=None):
    return http_status(address, "GET", "/v1/tasks/%s/pieces/0%s" % (tid, query), b"", headers or {})


@pytest.mark.time_limit(30)
def test_an_uploader_serves_a_piece_only_with_a_token_for_that_task_and_requester(seeded):
    seeder, tid, _ = seeded
    address, key = seeder.uploader_address, piecetoken.key_of(peer_secret_of(seeder))
    query, good = piece_access(key, tid, "reader")
    assert _status(address, tid, query, good) == 200

    assert _status(address, tid) == 403                       # no token: a stranger who knows the id
    assert _status(address, tid, query) == 403
    expired = piecetoken.mint(key, tid, "reader", time.time() - piecetoken.SKEW_S - 60, ttl_s=1)
    assert _status(address, tid, query, {piecetoken.HEADER: expired}) == 403
    other_task = piecetoken.mint(key, "f" * 64, "reader", time.time())
    assert _status(address, tid, query, {piecetoken.HEADER: other_task}) == 403
    assert _status(address, tid, "?peer=someone-else", good) == 403   # minted for "reader"
    _, wrong_key = piece_access("not the holder's secret", tid, "reader")
    assert _status(address, tid, query, wrong_key) == 403


@pytest.mark.time_limit(30)
def test_the_supernode_serves_its_pieces_only_with_a_token_it_minted(seeded, supernode):
    _, tid, _ = seeded
    address = tuple(supernode.listener.address)
    query, good = piece_access(supernode.service.piece_key, tid, "reader")
    assert _status(address, tid, query, good) == 200
    assert _status(address, tid) == 403
    _, not_ours = piece_access(b"another supernode's key", tid, "reader")
    assert _status(address, tid, query, not_ours) == 403


@pytest.mark.time_limit(30)
def test_a_scheduled_peer_reads_with_the_token_of_its_schedule_reply_and_not_without(
        seeded, sn_client):
    seeder, tid, src = seeded
    sn_client.register(RegisterRequest(url=src.url, peer_id="reader", peer_port=9,
                                       peer_host="127.0.0.1"))
    orders = sn_client.schedule(tid, ScheduleRequest("reader", want=3)).pieces
    assert orders and all(o.token for o in orders)
    fetcher = PieceFetcher(10, peer_id="reader", proof=lambda: sn_client.peer_secret)
    try:
        for order in orders:
            addr = order.addr or sn_client.address
            got = {}
            fetcher.fetch(addr, tid, order, lambda at, data, got=got: got.__setitem__(at, bytes(data)))
            assert b"".join(got[k] for k in sorted(got)) == src.data[order.start:order.start + order.size]
            with pytest.raises(PieceFailed, match="403"):
                fetcher.fetch(addr, tid, dataclasses.replace(order, token=""), lambda at, data: None)
    finally:
        fetcher.close()
    holders = {o.holder for o in orders}
    assert holders <= {SUPERNODE, seeder.peer_id}


@pytest.mark.time_limit(60)
def test_the_supernode_repairs_a_damaged_piece_from_a_peer_with_a_token_of_its_own(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(scrub_rate=0)
    src = origin.add("repaired.bin", content(4 * MiB, seed=32))
    holder = client_factory([supernode.address], seed_for_s=60)
    tid = holder.download(src.url, str(downloads / "held.bin")).task_id
    data = os.path.join(supernode.service.tasks_dir, tid, "data")
    with open(data, "r+b") as f:   # piece 0 goes bad on the supernode's disk
        f.write(b"\0" * 16)
    task = supernode.service.loaded_task(tid)
    with task.cond:
        supernode.service.repairer.suspect(task, 0, "a test says so")

    wait_until(lambda: supernode.service.task_status(tid)["repaired_pieces"] == 1, timeout=20,
               message="piece 0 repaired")
    assert [s for s in origin.served("repaired.bin") if s.status == 206] == []   # from the peer
    with open(data, "rb") as f:
        assert f.read(MiB) == src.data[:MiB]
