"""PieceFetcher against a scripted holder on a real socket: the body reads that
wait for a low-water mark must end on every way a holder can end a piece; and a
worker that crashes ends its download rather than leaving it waiting."""
import hashlib
import socketserver
import threading
import time

import pytest
from helpers import Serving

from dfly.peer.downloader import P2PDownload
from dfly.peer.piece_client import STEP_BYTES, PieceFailed, PieceFetcher
from dfly.peer.storage import PieceFile
from dfly.protocol.messages import PieceOrder, RegisterRequest
from dfly.supernode.client import SupernodeClient

PIECE = bytes(range(256)) * (3 * STEP_BYTES // 256 + 7)   # a few low-water steps and a tail


class Holder(Serving):
    """Answers every GET with `reply(handler)`; counts connections."""

    def __init__(self, reply):
        self.reply = reply
        self.connections = 0
        holder = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                holder.connections += 1
                while self.rfile.readline().strip():   # request line and headers
                    while self.rfile.readline().strip():
                        pass
                    if not holder.reply(self):
                        return

        super().__init__(Handler, "holder", socketserver.ThreadingTCPServer)


def _head(length, close=False):
    return ("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n"
            % (length, "Connection: close\r\n" if close else "")).encode()


def _order(num=0, data=PIECE):
    return PieceOrder(num=num, start=num * len(data), size=len(data),
                      sha256=hashlib.sha256(data).hexdigest(), holder="h", addr="")


def _fetch(holder, orders, timeout_s=5.0):
    out = {}
    fetcher = PieceFetcher(timeout_s)
    try:
        for order in orders:
            fetcher.fetch(holder.address, "0" * 64, order,
                          lambda offset, chunk: out.__setitem__(offset, bytes(chunk)))
    finally:
        fetcher.close()
    return b"".join(out[k] for k in sorted(out))


@pytest.fixture
def holder_with():
    made = []

    def make(reply):
        made.append(Holder(reply))
        return made[-1]
    yield make
    for h in made:
        h.stop()


def _in_odd_slices(h):   # headers with a few body bytes, then slices that straddle the steps
    h.wfile.write(_head(len(PIECE)) + PIECE[:1000])
    for at in range(1000, len(PIECE), 100_003):
        h.wfile.write(PIECE[at:at + 100_003])
        h.wfile.flush()
    return True   # keep the connection


def _then_close(h):   # "Connection: close": http.client drops the socket from the connection
    h.wfile.write(_head(len(PIECE), close=True) + PIECE)
    return False


@pytest.mark.time_limit(20)
@pytest.mark.parametrize("reply, connections", [(_in_odd_slices, 1), (_then_close, 2)])
def test_two_pieces_arrive_whole_however_the_holder_sends_them(holder_with, reply, connections):
    holder = holder_with(reply)
    assert _fetch(holder, [_order(0), _order(1)]) == PIECE + PIECE
    assert holder.connections == connections


@pytest.mark.time_limit(20)
def test_a_short_body_then_close_fails_the_piece_at_once(holder_with):
    def reply(h):
        h.wfile.write(_head(len(PIECE)) + PIECE[:STEP_BYTES + 5])
        return False
    with pytest.raises(PieceFailed, match="short piece"):
        _fetch(holder_with(reply), [_order(0)])


@pytest.mark.time_limit(20)
def test_a_holder_that_stalls_short_of_the_mark_fails_after_the_timeout(holder_with):
    release = threading.Event()

    def reply(h):
        h.wfile.write(_head(len(PIECE)) + PIECE[:STEP_BYTES // 2])
        h.wfile.flush()
        release.wait(15)
        return False
    try:
        with pytest.raises(PieceFailed, match="timed out"):
            _fetch(holder_with(reply), [_order(0)], timeout_s=1.0)
    finally:
        release.set()


@pytest.mark.time_limit(30)
@pytest.mark.parametrize("pooled", [False, True])
def test_a_holder_that_never_answers_fails_after_the_connect_timeout_once(holder_with, pooled):
    """A stopped holder (its kernel still accepts) costs the first-byte timeout, once,
    not the piece timeout, nor that twice through the retry for closed pooled connections."""
    release, answered = threading.Event(), []

    def reply(h):
        if not answered:   # the first request, on a pooled connection, is answered
            answered.append(True)
            h.wfile.write(_head(len(PIECE)) + PIECE)
            h.wfile.flush()
            return True
        release.wait(25)   # then it stops
        return False
    holder = holder_with(reply)
    if not pooled:
        answered.append(True)
    fetcher = PieceFetcher(20.0, connect_timeout_s=0.5)
    try:
        if pooled:
            fetcher.fetch(holder.address, "0" * 64, _order(0), lambda offset, chunk: None)
        began = time.monotonic()
        with pytest.raises(PieceFailed, match="no answer within"):
            fetcher.fetch(holder.address, "0" * 64, _order(1), lambda offset, chunk: None)
        assert time.monotonic() - began < 5.0
    finally:
        release.set()
        fetcher.close()


class _BrokenWrites(PieceFile):
    """Storage with a bug in it: not an I/O error the downloader knows, just a crash."""

    def write(self, offset, data):
        raise RuntimeError("a bug in the storage")


@pytest.mark.time_limit(30)
def test_an_unexpected_error_in_a_piece_worker_ends_the_download(origin, supernode, tmp_path):
    src = origin.add("f.bin", bytes(3 * 1024 * 1024))
    request = RegisterRequest(url=src.url, peer_id="crashing-peer", peer_port=9, peer_host="127.0.0.1")
    client = SupernodeClient(supernode.address, timeout_s=5)
    try:
        download = P2PDownload(client, request, _BrokenWrites(str(tmp_path / "f.part")), 2,
                               piece_timeout_s=5, deadline=time.monotonic() + 25)
        with pytest.raises(RuntimeError, match="a bug in the storage"):
            download.run()   # before, the dead worker's piece was awaited forever
    finally:
        client.close()
