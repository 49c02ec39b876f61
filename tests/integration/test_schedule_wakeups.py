"""Long-polling schedule calls are woken by the changes that concern them, and
only those: fake peers (supernode clients) against a real supernode and origin.

A call that returns with pieces before its deadline was woken by a change; one
that reached its deadline would find the same holder still busy or the same
copy still fresh, and return empty. So "it got a piece" is the proof of a wake,
with no clock in the assertion.
"""
import dataclasses
import hashlib
import http.client
import threading
import time

import pytest
from helpers import MiB, content, wait_until

from dfly.peer.piece_client import PieceFetcher
from dfly.protocol import piecetoken
from dfly.protocol.address import parse_address
from dfly.protocol.messages import SUPERNODE, PieceOrder, RegisterRequest, ScheduleRequest
from dfly.supernode.client import SupernodeClient
from dfly.supernode.config import SupernodeConfig
from dfly.supernode.service import Supernode

LONG_POLL_S = 5.0


class Call:
    """One schedule call on its own thread; result() waits for it."""

    def __init__(self, client: SupernodeClient, tid: str, request: ScheduleRequest):
        self._out = {}
        self._thread = threading.Thread(target=self._run, args=(client, tid, request),
                                        name="schedule-" + request.peer_id, daemon=True)
        self._thread.start()

    def _run(self, client, tid, request):
        try:
            self._out["state"] = client.schedule(tid, request)
        except BaseException as e:   # handed back to the test
            self._out["error"] = e

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self, timeout: float = 10.0):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the schedule call did not return"
        if "error" in self._out:
            raise self._out["error"]
        return self._out["state"]


@pytest.fixture
def peers(supernode):
    """peer(name) -> a SupernodeClient of its own (one connection per fake peer)."""
    made = []

    def make(name: str) -> SupernodeClient:
        client = SupernodeClient(supernode.address, timeout_s=10)
        client.name = name
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def register(client: SupernodeClient, url: str) -> str:
    tid, _ = client.register(RegisterRequest(url=url, peer_id=client.name, peer_port=9,
                                             peer_host="127.0.0.1"))
    return tid


def long_poll(client: SupernodeClient, tid: str, want: int = 1) -> Call:
    return Call(client, tid, ScheduleRequest(client.name, want=want, wait_s=LONG_POLL_S))


def waiting(observer: SupernodeClient, tid: str, count: int) -> None:
    """Wait until `count` calls long-poll (`observer`: a client no call is using)."""
    wait_until(lambda: observer.task(tid)["waiting"] == count, timeout=10,
               message="%d schedule calls long-polling" % count)


def first_holder(client: SupernodeClient, tid: str, url: str) -> None:
    """`client` gets piece 0 from the supernode (once cut) and is fetching it."""
    register(client, url)
    state = client.schedule(tid, ScheduleRequest(client.name, want=1, wait_s=LONG_POLL_S))
    assert [(p.num, p.holder) for p in state.pieces] == [(0, "supernode")]


@pytest.mark.time_limit(30)
def test_a_long_polling_peer_gets_a_piece_as_soon_as_another_peer_reports_it(origin, peers,
                                                                             sn_client):
    src = origin.add("one.bin", content(MiB, seed=1))
    a, b = peers("a"), peers("b")
    tid = register(b, src.url)
    first_holder(a, tid, src.url)

    call = long_poll(b, tid)   # a is fetching piece 0 from the supernode: b waits for a
    waiting(sn_client, tid, 1)
    a.schedule(tid, ScheduleRequest("a", done=[0], want=0))

    state = call.result()
    assert [(p.num, p.holder) for p in state.pieces] == [(0, "a")]
    assert 0 < state.waited_s < LONG_POLL_S


@pytest.mark.time_limit(30)
def test_one_report_serves_every_waiter_it_can_one_after_another(origin, peers, sn_client):
    src = origin.add("one.bin", content(MiB, seed=2))
    a = peers("a")
    others = [peers(name) for name in ("b", "c", "d")]
    tid = register(others[0], src.url)
    for peer in others[1:]:
        register(peer, src.url)
    first_holder(a, tid, src.url)

    calls = [long_poll(peer, tid) for peer in others]
    waiting(sn_client, tid, 3)
    a.schedule(tid, ScheduleRequest("a", done=[0], want=0))   # a can serve five at once

    for call in calls:
        assert [(p.num, p.holder) for p in call.result().pieces] == [(0, "a")]


@pytest.mark.time_limit(30)
def test_a_freed_upload_slot_wakes_the_waiter_a_busy_holder_made_wait(supernode_factory, origin):
    supernode = supernode_factory(max_uploads_per_peer=1)
    src = origin.add("one.bin", content(MiB, seed=3))
    a, b, c, observer = (SupernodeClient(supernode.address, timeout_s=10) for _ in range(4))
    for client, name in ((a, "a"), (b, "b"), (c, "c")):
        client.name = name
    try:
        tid = register(b, src.url)
        register(c, src.url)
        first_holder(a, tid, src.url)
        call_b, call_c = long_poll(b, tid), long_poll(c, tid)
        waiting(observer, tid, 2)

        a.schedule(tid, ScheduleRequest("a", done=[0], want=0))
        served = wait_until(lambda: call_b if call_b.done() else call_c if call_c.done() else None,
                            timeout=10, message="one waiter served by a")
        first, second = (b, call_c) if served is call_b else (c, call_b)
        assert [(p.num, p.holder) for p in served.result().pieces] == [(0, "a")]
        waiting(observer, tid, 1)   # a's one upload slot is taken: the other waits on

        first.schedule(tid, ScheduleRequest(first.name, done=[0], want=0))   # a's slot is free

        assert [p.num for p in second.result().pieces] == [0]
    finally:
        for client in (a, b, c, observer):
            client.close()


@pytest.mark.time_limit(30)
def test_a_long_polling_peer_gets_a_piece_as_soon_as_the_supernode_cuts_it(origin, peers,
                                                                            sn_client):
    src = origin.add("three.bin", content(12 * MiB, seed=4))   # several pieces
    go = threading.Event()
    origin.fault("three.bin", hold=go, stall_after=4 * MiB)   # then only the first ones
    a = peers("a")
    tid = register(a, src.url)

    call = long_poll(a, tid)
    waiting(sn_client, tid, 1)
    go.set()

    state = call.result()
    assert [(p.num, p.holder) for p in state.pieces] == [(0, "supernode")]
    assert state.state == "running"   # woken by the piece, not by the source finishing
    origin.stop()   # the stalled fetch ends now, not when the supernode's stop gives up on it (5 s)


@pytest.mark.time_limit(30)
def test_a_failing_source_wakes_every_waiter(origin, peers, sn_client):
    src = origin.add("broken.bin", content(MiB, seed=5))
    go = threading.Event()
    origin.fault("broken.bin", hold=go, status=500)
    clients = [peers(name) for name in ("a", "b", "c")]
    tid = register(clients[0], src.url)
    for client in clients[1:]:
        register(client, src.url)

    calls = [long_poll(client, tid) for client in clients]
    waiting(sn_client, tid, 3)
    go.set()

    for call in calls:
        state = call.result()
        assert state.state == "failed" and state.error_kind == "SourceError"
        assert state.waited_s < LONG_POLL_S - 1   # woken by the failure, not its deadline


@pytest.mark.time_limit(30)
def test_a_reply_says_how_long_it_waited_on_purpose(origin, peers):
    src = origin.add("held.bin", content(MiB, seed=6))
    go = threading.Event()
    origin.fault("held.bin", hold=go)
    a = peers("a")
    tid = register(a, src.url)

    asked_not_to_wait = a.schedule(tid, ScheduleRequest("a", want=1))
    timed_out = a.schedule(tid, ScheduleRequest("a", want=1, wait_s=0.3))
    go.set()

    assert asked_not_to_wait.waited_s == 0 and asked_not_to_wait.pieces == []
    assert timed_out.pieces == [] and 0.1 < timed_out.waited_s <= 0.3


@pytest.mark.time_limit(30)
def test_a_peer_reporting_its_last_piece_on_another_connection_ends_its_own_long_poll(
        origin, tmp_path):
    """A downloader's coordinator long-polls while its reporter reports the pieces its
    workers finish: the report that completes the file must end the poll. The service
    runs without its janitor thread, whose once-a-second baton would hide a miss."""
    src = origin.add("one.bin", content(MiB, seed=7))
    service = Supernode(SupernodeConfig(), str(tmp_path / "sn"))   # not start()ed
    registered = service.register(RegisterRequest(url=src.url, peer_id="a", peer_port=9,
                                                  peer_host="127.0.0.1").to_json(), "127.0.0.1")
    tid, secret = registered["task_id"], registered["peer_secret"]
    first = service.schedule(tid, ScheduleRequest("a", want=1, wait_s=LONG_POLL_S).to_json(), secret)
    assert [p["num"] for p in first["pieces"]] == [0]
    wait_until(lambda: service.task_status(tid)["state"] == "done", message="the source cut")

    reply = {}
    poll = threading.Thread(target=lambda: reply.update(service.schedule(
        tid, ScheduleRequest("a", want=4, wait_s=LONG_POLL_S).to_json(), secret)), daemon=True)
    poll.start()   # piece 0 is in flight to "a" itself: nothing to give, so it waits
    wait_until(lambda: service.task_status(tid)["waiting"] == 1, message="the long-poll")
    service.schedule(tid, ScheduleRequest("a", done=[0], want=0).to_json(), secret)   # the reporter

    poll.join(LONG_POLL_S + 5)
    assert reply["pieces"] == []
    assert reply["waited_s"] < LONG_POLL_S - 1   # woken by its own report, not its deadline


def _fetch_from_supernode(supernode, tid: str, piece, peer_id: str, secret: str = "") -> bytes:
    """Fetch `piece` (a PieceOrder naming the supernode) as the piece workers do."""
    got = bytearray(piece.size)

    def write(offset, data):
        got[offset - piece.start:offset - piece.start + len(data)] = data

    # the token a schedule reply would carry (the test built the order itself)
    piece = dataclasses.replace(piece, token=piecetoken.mint(supernode.service.piece_key, tid,
                                                             peer_id, time.time()))
    fetcher = PieceFetcher(10, peer_id=peer_id, proof=lambda: secret)
    try:
        fetcher.fetch(supernode.address, tid, piece, write)
    finally:
        fetcher.close()
    return bytes(got)


@pytest.mark.time_limit(30)
def test_a_piece_sent_whole_frees_the_supernode_slot_before_it_is_reported(supernode_factory,
                                                                             origin):
    # Whole pieces only: with cut-through, b would be sent to a for piece 0 (a relay).
    supernode = supernode_factory(max_uploads=1, cut_through=False)
    data = content(2 * MiB, seed=7)   # two pieces
    src = origin.add("two.bin", data)
    a, b, observer = (SupernodeClient(supernode.address, timeout_s=10) for _ in range(3))
    a.name, b.name = "a", "b"
    try:
        tid = register(b, src.url)
        first_holder(a, tid, src.url)
        call = long_poll(b, tid)   # the supernode's one slot is a's: b waits
        waiting(observer, tid, 1)
        order = PieceOrder(0, 0, MiB, hashlib.sha256(data[:MiB]).hexdigest(), SUPERNODE)

        assert _fetch_from_supernode(supernode, tid, order, "a", a.peer_secret) == data[:MiB]   # no report

        assert [(p.num, p.holder) for p in call.result().pieces] == [(1, SUPERNODE)]
    finally:
        for client in (a, b, observer):
            client.close()


def _fetch_anonymously(supernode, tid: str, data: bytes) -> bytes:
    """As a requester the supernode does not know as a peer (with a token for it)."""
    order = PieceOrder(0, 0, MiB, hashlib.sha256(data[:MiB]).hexdigest(), SUPERNODE)
    return _fetch_from_supernode(supernode, tid, order, "stranger")


def _fetch_as_a_without_its_secret(supernode, tid: str, data: bytes) -> bytes:
    """Naming peer "a" from the host it registered from, without a's secret."""
    order = PieceOrder(0, 0, MiB, hashlib.sha256(data[:MiB]).hexdigest(), SUPERNODE)
    return _fetch_from_supernode(supernode, tid, order, "a", "not-the-secret")


def _fetch_as_a_from_another_host(supernode, tid: str, data: bytes) -> bytes:
    """Naming peer "a", which registered as 127.0.0.1, from 127.0.0.2."""
    host, port = parse_address(supernode.address, 0)
    elsewhere = http.client.HTTPConnection(host, port, timeout=10, source_address=("127.0.0.2", 0))
    try:
        elsewhere.request("GET", "/v1/tasks/%s/pieces/0?peer=a" % tid, headers={
            piecetoken.HEADER: piecetoken.mint(supernode.service.piece_key, tid, "a", time.time())})
        return elsewhere.getresponse().read()
    finally:
        elsewhere.close()


@pytest.mark.time_limit(30)
@pytest.mark.parametrize("fetch", [_fetch_anonymously, _fetch_as_a_from_another_host,
                                   _fetch_as_a_without_its_secret])
def test_a_fetch_the_supernode_cannot_tie_to_its_peer_holds_the_slot_until_reported(
        supernode_factory, origin, fetch):
    """Without `?peer=`, or naming a peer from another host than it registered from
    (anyone could), the bytes are served but our slot waits for the peer's report (one
    slot: no fan-out, which would give each of the two peers its own)."""
    supernode = supernode_factory(max_uploads=1, fanout=0)
    data = content(2 * MiB, seed=8)
    src = origin.add("two.bin", data)
    a, b = SupernodeClient(supernode.address, timeout_s=10), SupernodeClient(supernode.address,
                                                                             timeout_s=10)
    a.name, b.name = "a", "b"
    try:
        tid = register(b, src.url)
        first_holder(a, tid, src.url)   # a fetches piece 0 from the supernode's one slot
        assert fetch(supernode, tid, data) == data[:MiB]

        assert b.schedule(tid, ScheduleRequest("b", want=1, wait_s=0.3)).pieces == []
        a.schedule(tid, ScheduleRequest("a", done=[0], want=0))
        assert [p.holder for p in b.schedule(tid, ScheduleRequest("b", want=1)).pieces] == [SUPERNODE]
    finally:
        a.close()
        b.close()
