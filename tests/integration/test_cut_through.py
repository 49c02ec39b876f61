"""Cut-through relay with a real supernode (--cut-through): a peer still fetching a piece serves
its verified blocks to another at once; a relay that stops, stalls, lies about
a block or dies mid-piece costs the requester that piece's attempt only (within
the piece timeout), and the file is right."""
import hashlib
import http.client
import socket
import socketserver
import threading
import time

import pytest
from helpers import MiB, Serving, content, sha256_file, wait_until

from dfly.peer.trace import Trace
from dfly.protocol.messages import PEER_SECRET_HEADER, RELAY_HEADER, RegisterRequest, ScheduleRequest
from dfly.protocol.pieces import block_size_for
from dfly.protocol.piecetoken import HEADER as PIECE_TOKEN_HEADER
from dfly.supernode.client import SupernodeClient

BLOCK = block_size_for(MiB)   # the blocks of the 1 MiB pieces these files are cut in


@pytest.fixture
def supernode(supernode_factory):
    return supernode_factory()   # relays are on by default: these tests fail if they are not


@pytest.mark.time_limit(60)
def test_a_peer_still_fetching_a_piece_relays_it_block_by_block(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(cut_through=True)
    src = origin.add("relayed.bin", content(6 * MiB, seed=91))
    slow = client_factory([supernode.address], rate_limit=2 * MiB, parallel=2)
    fast = client_factory([supernode.address])
    done = {}

    def first():
        done["slow"] = slow.download(src.url, str(downloads / "slow.bin"), digest=src.digest)

    thread = threading.Thread(target=first, name="slow-get", daemon=True)
    thread.start()
    try:
        # Once the slow peer has begun, the fast one joins: it is sent to the slow
        # one for the pieces on their way there, and gets their blocks as they land.
        wait_until(lambda: slow._uploader is not None and slow._uploader.task_ids(), timeout=10,
                   message="the slow peer registered")
        result = fast.download(src.url, str(downloads / "fast.bin"), digest=src.digest)
    finally:
        thread.join(40)
    assert sha256_file(str(downloads / "fast.bin")) == src.sha256 == sha256_file(str(downloads / "slow.bin"))
    assert slow._uploader.relayed_pieces >= 1
    assert result.bytes_from_peers >= MiB
    assert origin.requests("relayed.bin") == 1


class FakeRelay(Serving):
    """Registers as a peer, takes piece 0 (or, not `sequential`, the rarest) from the
    supernode and never reads it; answers every piece request as a relay of that
    piece with `script(wfile, socket, piece, done)`."""

    def __init__(self, address, url, data, script, peer_id="relay", sequential=True):
        self.requests = 0
        self.done = threading.Event()
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                while self.rfile.readline().strip():
                    pass
                fake.requests += 1
                self.wfile.write(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s: arriving\r\n\r\n"
                                  % (MiB, RELAY_HEADER)).encode())
                try:
                    script(self.wfile, self.connection, data[fake.num * MiB:(fake.num + 1) * MiB],
                           fake.done)
                except OSError:
                    pass

        super().__init__(Handler, "fake-relay", socketserver.ThreadingTCPServer)
        self.client = SupernodeClient(address, timeout_s=5)
        tid, _ = self.client.register(RegisterRequest(url=url, peer_id=peer_id, peer_host="127.0.0.1",
                                                      peer_port=self.port))
        wait_until(lambda: self.client.task(tid)["state"] == "done", timeout=10,
                   message="the supernode cached the source")
        orders = self.client.schedule(tid, ScheduleRequest(peer_id, want=1, sequential=sequential)).pieces
        assert len(orders) == 1 and orders[0].holder == "supernode"
        self.num = orders[0].num
        # It begins the fetch (the supernode sees it ask: only then is it a relay) and
        # reads no further: for the supernode's 3 s it counts as a copy on its way.
        host, port = _split(address)
        self.fetch = http.client.HTTPConnection(host, port, timeout=5)
        self.fetch.request("GET", "/v1/tasks/%s/pieces/%d?peer=%s" % (tid, self.num, peer_id),
                           headers={PIECE_TOKEN_HEADER: orders[0].token,
                                    PEER_SECRET_HEADER: self.client.peer_secret})
        assert self.fetch.getresponse().status == 200

    def stop(self):
        self.done.set()
        self.fetch.close()
        self.client.close()
        super().stop()


def _split(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


def _stops(wfile, conn, piece, done):       # its own source failed after one block: ends short
    wfile.write(piece[:BLOCK])
    wfile.flush()
    conn.shutdown(socket.SHUT_RDWR)


def _stalls(wfile, conn, piece, done):      # one block, then nothing (it stopped, or lies)
    wfile.write(piece[:BLOCK])
    wfile.flush()
    done.wait(30)


def _lies(wfile, conn, piece, done):        # a right block, then a wrong one
    wfile.write(piece[:BLOCK] + b"\xee" * (MiB - BLOCK))


def _disorders(wfile, conn, piece, done):   # right blocks, sent out of order
    wfile.write(piece[BLOCK:2 * BLOCK] + piece[:BLOCK] + piece[2 * BLOCK:])


def _dies(wfile, conn, piece, done):        # half a block, then the process is gone
    wfile.write(piece[:BLOCK // 2])
    wfile.flush()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.close()   # (a reset, as the kernel sends for a killed process with data unread)


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("script,blamed", [(_stops, False), (_stalls, True), (_lies, True),
                                           (_disorders, True), (_dies, True)])
def test_a_relay_that_fails_mid_piece_costs_one_attempt_and_the_file_is_right(
        origin, supernode_factory, client_factory, downloads, script, blamed):
    # The fake takes piece 0 and reads none of it: a relay for the supernode's 3 s,
    # then a slow reader, waited for no more.
    supernode = supernode_factory(assignment_start_timeout_s=4.0, cut_through=True)
    data = content(3 * MiB, seed=92)
    src = origin.add("f.bin", data)
    relay = FakeRelay(supernode.address, src.url, data, script)
    try:
        began = time.monotonic()
        result = client_factory([supernode.address], piece_timeout_s=3.0).download(
            src.url, str(downloads / "f.bin"))
        took = time.monotonic() - began
        assert sha256_file(str(downloads / "f.bin")) == hashlib.sha256(data).hexdigest()
        assert relay.requests == 1   # asked once, never again for that piece
        assert took < 4.0 + 3.0 + 8, took   # the start timeout, the piece timeout, and slack
        assert result.bytes_from_peers == 0 and result.via == "p2p"
        # Blamed: counted against the relay for everyone (the requester, done, has left).
        assert _scheduler(supernode).peers["relay"].errors == (1 if blamed else 0)
    finally:
        relay.stop()


def _scheduler(supernode):
    [task] = supernode.service._tasks.values()
    return task.scheduler


@pytest.mark.time_limit(30)
def test_a_waiting_peer_is_sent_to_a_relay_once_its_fetch_from_the_supernode_began(
        origin, supernode, sn_client):
    src = origin.add("one.bin", content(MiB, seed=93))
    a, b = (SupernodeClient(supernode.address, timeout_s=10) for _ in range(2))
    try:
        tid, _ = a.register(RegisterRequest(url=src.url, peer_id="a", peer_port=9, peer_host="127.0.0.1"))
        b.register(RegisterRequest(url=src.url, peer_id="b", peer_port=9, peer_host="127.0.0.1"))
        wait_until(lambda: sn_client.task(tid)["state"] == "done", timeout=10, message="cached")
        [order] = a.schedule(tid, ScheduleRequest("a", want=1)).pieces
        assert order.holder == "supernode"
        polled = {}
        call = threading.Thread(target=lambda: polled.update(
            state=b.schedule(tid, ScheduleRequest("b", want=1, wait_s=5.0))), name="b-polls", daemon=True)
        call.start()
        wait_until(lambda: sn_client.task(tid)["waiting"] == 1, timeout=10, message="b long-polls")
        # a begins, on a socket with a small receive buffer: the piece cannot be sent
        # whole for the supernode's 3 s (being sent wakes waiters too).
        fetch = socket.socket()
        fetch.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        fetch.settimeout(5)
        fetch.connect(_split(supernode.address))
        fetch.sendall(("GET /v1/tasks/%s/pieces/0?peer=a HTTP/1.1\r\nHost: sn\r\n%s: %s\r\n"
                       "%s: %s\r\n\r\n" % (tid, PIECE_TOKEN_HEADER, order.token, PEER_SECRET_HEADER,
                                              a.peer_secret)).encode())
        assert fetch.recv(12) == b"HTTP/1.1 200"
        call.join(10)
        fetch.close()
        state = polled["state"]
        assert [(p.num, p.holder) for p in state.pieces] == [(0, "a")]
        # Woken once a's fetch began (at once; the janitor's baton a second is the
        # fallback), not at the deadline, and not by the piece being sent whole.
        assert state.waited_s < 4.0
    finally:
        a.close()
        b.close()


def _slowly(wfile, conn, piece, done):      # every block, at its source's (slow) pace
    for at in range(0, len(piece), BLOCK):
        wfile.write(piece[at:at + BLOCK])
        wfile.flush()
        if done.wait(0.4):
            return


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("free", [True, False])
def test_a_fetch_from_a_relay_holds_a_parallel_slot_unless_relay_slots_are_free(
        origin, supernode_factory, client_factory, downloads, free):
    """With --free-relay-slots a get with one worker, sent to a relay for piece 0,
    asks for the next piece meanwhile instead of waiting on it (the order says
    `relay`), and fetches it beside; without, the relay holds its one slot (a
    requester running twice its slots slows the supernode's own flows into it:
    bench/swarm_sim.py). The file is right either way."""
    supernode = supernode_factory(assignment_start_timeout_s=8.0, cut_through=True,
                                  free_relay_slots=free, fanout=0)
    data = content(3 * MiB, seed=94)
    src = origin.add("slots.bin", data)
    relay = FakeRelay(supernode.address, src.url, data, _slowly)
    trace = Trace()
    try:
        # At 1 MiB/s the supernode's pieces come no faster than 64 times the relay's
        # pace (160 KB/s): the relay is not left as lagging (piece_client.relay_lags).
        client_factory([supernode.address], parallel=1, rate_limit=MiB).download(
            src.url, str(downloads / "slots.bin"), sequential=True, trace=trace)
    finally:
        relay.stop()
    assert sha256_file(str(downloads / "slots.bin")) == hashlib.sha256(data).hexdigest()
    pieces = {p["num"]: p for p in trace.pieces if p["ok"]}
    assert pieces[0]["holder"] == "relay" and relay.requests == 1
    # The trace says which fetch was relayed, and the slots it had (bench/traces.py reads both).
    assert pieces[0]["relay"] is True and pieces[1]["relay"] is False
    assert [e["parallel"] for e in trace.events if e["kind"] == "registered"] == [1]
    if free:
        assert pieces[1]["start_s"] < pieces[0]["end_s"]   # begun while the relay still ran
        assert max(s["want"] for s in trace.schedules) <= 2   # at most twice --parallel
    else:
        assert pieces[1]["start_s"] >= pieces[0]["end_s"]   # after the relayed piece
        assert max(s["want"] for s in trace.schedules) <= 1


@pytest.mark.time_limit(60)
def test_a_get_with_one_worker_takes_a_stream_from_each_relay_the_supernode_feeds_at_once(
        origin, supernode_factory, client_factory, downloads):
    """The fan-out: each of three peers fetches its own piece from the supernode and
    relays it; a get with --parallel 1 takes all three streams at once (they hold
    no slot: the order says `relay`), not one after another, nor two at a time
    (twice --parallel, before)."""
    supernode = supernode_factory(assignment_start_timeout_s=8.0)
    data = content(3 * MiB, seed=95)
    src = origin.add("streams.bin", data)
    relays = []
    trace = Trace()
    try:
        for i in range(3):
            relays.append(FakeRelay(supernode.address, src.url, data, _slowly, peer_id="relay%d" % i,
                                    sequential=False))
        assert sorted(r.num for r in relays) == [0, 1, 2]
        client_factory([supernode.address], parallel=1).download(
            src.url, str(downloads / "streams.bin"), sequential=True, trace=trace)
    finally:
        for relay in relays:
            relay.stop()
    assert sha256_file(str(downloads / "streams.bin")) == hashlib.sha256(data).hexdigest()
    pieces = [p for p in trace.pieces if p["ok"]]
    assert sorted(p["holder"] for p in pieces) == ["relay0", "relay1", "relay2"]
    assert all(p["relay"] for p in pieces)
    assert max(p["start_s"] for p in pieces) < min(p["end_s"] for p in pieces)   # all at once
