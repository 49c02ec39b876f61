"""Peers are who they say they are: registration returns a per-peer secret, and
every later call in that peer's name (schedule and its reports, heartbeat,
leave, a piece fetch with ?peer=) must carry it. Another client, here on a
second loopback address, can neither act for the peer nor take its id over."""
import http.client
import json

import pytest
from helpers import MiB, content, wait_until

from dfly import errors
from dfly.peer import seeder as detached
from dfly.peer.storage import FinishedFile
from dfly.protocol.address import parse_address
from dfly.protocol.messages import PEER_SECRET_HEADER, Failure, RegisterRequest, ScheduleRequest
from dfly.supernode.client import SupernodeClient


def _call(supernode, method, path, body=None, secret=None, source="127.0.0.2"):
    """One request from another host (`source`), with or without a peer secret."""
    host, port = parse_address(supernode.address, 0)
    conn = http.client.HTTPConnection(host, port, timeout=10, source_address=(source, 0))
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[PEER_SECRET_HEADER] = secret
    try:
        conn.request(method, path, json.dumps(body).encode() if body is not None else None, headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


@pytest.fixture
def victim(origin, supernode):
    """Peer "victim", registered for a finished task and holding its one piece."""
    src = origin.add("f.bin", content(MiB, seed=5))
    client = SupernodeClient(supernode.address, timeout_s=10)
    request = RegisterRequest(url=src.url, peer_id="victim", peer_port=7001, peer_host="127.0.0.1")
    tid, _ = client.register(request)
    wait_until(lambda: client.task(tid)["state"] == "done", message="the source fetched")
    client.schedule(tid, ScheduleRequest("victim", done=[0], want=0))
    yield client, tid, src
    client.close()


def test_registration_returns_a_secret_and_the_client_sends_it(victim):
    client, tid, _ = victim
    assert len(client.peer_secret) >= 32
    client.heartbeat(tid, "victim")   # accepted: the client proves the id


@pytest.mark.parametrize("secret", [None, "", "0" * 32])
def test_calls_in_a_peers_name_without_its_secret_are_refused(victim, supernode, secret):
    client, tid, _ = victim
    report = {"peer_id": "victim", "done": [], "failed": [{"num": 0, "holder": "x"}], "want": 4}
    for method, path, body in [("POST", "/v1/tasks/%s/schedule" % tid, report),
                               ("POST", "/v1/tasks/%s/peers/victim/heartbeat" % tid, {}),
                               ("DELETE", "/v1/tasks/%s/peers/victim" % tid, None)]:
        status, reply = _call(supernode, method, path, body, secret)
        assert (status, reply["kind"]) == (403, "Forbidden"), path
    assert client.task(tid)["peers"] == 1   # still there, and still a holder
    other = SupernodeClient(supernode.address, timeout_s=10)
    try:
        other.register(RegisterRequest(url=victim[2].url, peer_id="other", peer_port=7002,
                                       peer_host="127.0.0.2"))
        pieces = other.schedule(tid, ScheduleRequest("other", want=1)).pieces
        assert [(p.holder, p.addr) for p in pieces] == [("victim", "127.0.0.1:7001")]
    finally:
        other.close()


def test_registering_another_peers_id_does_not_take_it_over(victim, supernode):
    client, tid, src = victim
    hijack = {"url": src.url, "peer": {"id": "victim", "host": "127.0.0.2", "port": 6666}}
    status, reply = _call(supernode, "POST", "/v1/tasks", hijack)
    assert (status, reply["kind"]) == (403, "Forbidden")
    status, reply = _call(supernode, "POST", "/v1/tasks", hijack, secret="guess")
    assert status == 403
    thief = SupernodeClient(supernode.address, timeout_s=10)
    try:
        thief.register(RegisterRequest(url=src.url, peer_id="thief", peer_port=7003,
                                       peer_host="127.0.0.2"))
        assert [p.addr for p in thief.schedule(tid, ScheduleRequest("thief", want=1)).pieces] \
            == ["127.0.0.1:7001"]   # the victim's address, not the hijacker's
    finally:
        thief.close()


def test_the_peer_itself_registers_again_with_its_secret(victim):
    client, tid, src = victim
    secret = client.peer_secret
    again, _ = client.register(RegisterRequest(url=src.url, peer_id="victim", peer_port=7001,
                                               peer_host="127.0.0.1"))
    assert again == tid and client.peer_secret == secret


def test_a_restarted_supernode_gives_a_known_peer_a_new_secret(origin, supernode_factory, tmp_path):
    src = origin.add("g.bin", content(MiB, seed=6))
    first = supernode_factory(data_dir=tmp_path / "sn")
    client = SupernodeClient(first.address, timeout_s=10)
    request = RegisterRequest(url=src.url, peer_id="p", peer_port=7001, peer_host="127.0.0.1")
    try:
        tid, _ = client.register(request)
        old = client.peer_secret
        address = first.address
        first.stop()
        again = supernode_factory(data_dir=tmp_path / "sn", listen=address)
        assert again.address == address
        client.close()
        with pytest.raises((errors.Gone, errors.NotFound)):   # it knows neither task nor peer
            client.heartbeat(tid, "p")
        client.register(request)   # sends the old secret: an unknown id is simply registered
        assert client.peer_secret and client.peer_secret != old
        client.heartbeat(tid, "p")
    finally:
        client.close()


def test_a_seeder_rechecking_a_piece_a_peer_discarded_offers_it_again_in_its_own_name(
        origin, supernode, client_factory, downloads):
    """The seeder's re-report (after its heartbeat named a piece to check) carries its
    secret: without it the supernode would refuse it and the piece stay withdrawn."""
    src = origin.add("seeded.bin", content(2 * MiB, seed=8))
    seeder = client_factory([supernode.address], seed_for_s=30)
    path = str(downloads / "seeded.bin")
    tid = seeder.download(src.url, path).task_id
    liar = SupernodeClient(supernode.address, timeout_s=10)
    asker = SupernodeClient(supernode.address, timeout_s=10)
    try:
        liar.register(RegisterRequest(url=src.url, peer_id="liar", peer_port=9, peer_host="127.0.0.2"))
        [piece] = liar.schedule(tid, ScheduleRequest("liar", want=1)).pieces
        assert piece.holder == seeder.peer_id
        liar.schedule(tid, ScheduleRequest("liar", want=0, failed=[
            Failure(piece.num, seeder.peer_id, "digest mismatch (a lie)")]))
        task = {"task_id": tid, "supernode": supernode.address, "length": src.size,
                "piece_size": MiB, "register": seeder.registration(tid).to_json(),
                "content_version": seeder.content_version_of(tid)}
        spec = {"peer_id": seeder.peer_id, "supernodes": [supernode.address],
                "secrets": seeder.secrets.to_json()}
        assert detached._heartbeat(task, spec, FinishedFile(path, src.size, MiB))
        asker.register(RegisterRequest(url=src.url, peer_id="asker", peer_port=9,
                                       peer_host="127.0.0.3"))
        got = asker.schedule(tid, ScheduleRequest("asker", want=2)).pieces
        assert {p.holder for p in got} == {seeder.peer_id}   # both pieces from the seeder again
    finally:
        liar.close()
        asker.close()


def test_a_peer_cannot_make_the_supernode_hand_out_a_third_host_as_a_holder(origin, supernode):
    """It registers from 127.0.0.1 and claims to be reached at 127.0.0.9: others are sent
    to 127.0.0.1 (where it is), never to a host it chose (--trust-peer-hosts is off)."""
    src = origin.add("third.bin", content(MiB, seed=9))
    liar = SupernodeClient(supernode.address, timeout_s=10)
    try:
        tid, _ = liar.register(RegisterRequest(url=src.url, peer_id="claims", peer_port=7009,
                                               peer_host="127.0.0.9"))
        task = supernode.service.loaded_task(tid)
        with task.cond:
            assert task.scheduler.addr_of("claims") == ("127.0.0.1", 7009)
    finally:
        liar.close()
