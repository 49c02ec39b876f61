"""A piece fetched block by block (protocol v2), against scripted holders on real
sockets: a bad block ends the fetch at that block with nothing of it written,
a holder that sends blocks out of order or lies about a block is caught at
the first wrong one, a holder that stalls mid-piece costs the piece timeout
(a relay that stops costs less, and is not blamed for it; one whose blocks
come seconds apart is waited for, unless the download's other fetches go far
faster: then it is left, unblamed)."""
import hashlib
import socket
import socketserver
import threading
import time

import pytest
from certs import Certs
from helpers import Serving, content

from dfly.httpd import Paces
from dfly.peer.piece_client import PieceFailed, PieceFetcher
from dfly.protocol.messages import (
    RELAY_HEADER,
    RELAY_STOPPED,
    RELAY_WAIT_S,
    PieceOrder,
    copy_suspect,
    relay_blameless,
)
from dfly.protocol.pieces import block_digests
from dfly.tls import TLS, TLSOptions

BLOCK = 256 * 1024
PIECE = content(4 * BLOCK + 1000, seed=81)   # four whole blocks and a short one


class ScriptedHolder(Serving):
    """Answers one piece request per connection with `script(wfile)` after the head
    (over TLS with `tls`, a dfly.tls.TLS that serves)."""

    def __init__(self, script, relay=False, size=len(PIECE), tls=None):
        holder = self
        self.done = threading.Event()   # set at teardown: scripts that stall wait on it

        class Server(socketserver.ThreadingTCPServer):
            def get_request(self):
                sock, addr = super().get_request()
                if tls is not None:
                    sock = tls.server_context().wrap_socket(sock, server_side=True)
                return sock, addr

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                while self.rfile.readline().strip():
                    pass
                head = "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % size
                if relay:
                    head += "%s: arriving\r\n" % RELAY_HEADER
                self.wfile.write((head + "\r\n").encode())
                try:
                    script(self.wfile, holder.done)
                except OSError:
                    pass

        super().__init__(Handler, "scripted-holder", Server)

    def stop(self):
        self.done.set()
        super().stop()


@pytest.fixture
def holder():
    made = []

    def make(script, relay=False, size=len(PIECE), tls=None):
        made.append(ScriptedHolder(script, relay, size, tls))
        return made[-1]
    yield make
    for h in made:
        h.stop()


def _order(sha256=None, blocks=None):
    return PieceOrder(num=0, start=0, size=len(PIECE), sha256=sha256 or hashlib.sha256(PIECE).hexdigest(),
                      holder="h", addr="", block_size=BLOCK if blocks != () else 0,
                      blocks=tuple(block_digests(PIECE, BLOCK)) if blocks is None else blocks)


def _fetch(address, timeout_s=5.0, order=None):
    """(bytes written by offset, on_block calls, the failure or None, seconds taken)."""
    written, verified = {}, []
    fetcher = PieceFetcher(timeout_s, connect_timeout_s=2.0)
    began = time.monotonic()
    failure = None
    try:
        fetcher.fetch(address, "0" * 64, order or _order(),
                      lambda offset, chunk: written.__setitem__(offset, bytes(chunk)), verified.append)
    except PieceFailed as e:
        failure = e
    finally:
        fetcher.close()
    return written, verified, failure, time.monotonic() - began


def _covered(written):
    return sum(len(chunk) for chunk in written.values())


def test_a_whole_good_piece_is_written_block_by_block_each_verified_first(holder):
    written, verified, failure, _ = _fetch(holder(lambda w, done: w.write(PIECE)).address)
    assert failure is None
    assert b"".join(written[k] for k in sorted(written)) == PIECE
    assert verified == [BLOCK, 2 * BLOCK, 3 * BLOCK, 4 * BLOCK, len(PIECE)]


def test_a_bad_block_ends_the_fetch_there_and_nothing_of_it_is_written(holder):
    lie = PIECE[:2 * BLOCK] + b"\xee" * BLOCK + PIECE[3 * BLOCK:]   # block 2 wrong, the rest right
    written, verified, failure, _ = _fetch(holder(lambda w, done: w.write(lie)).address)
    assert str(failure) == "digest mismatch in block 2 (bytes 524288-786431 of the piece)"
    assert copy_suspect(str(failure))   # the holder's copy is doubted: it sent it
    assert verified == [BLOCK, 2 * BLOCK] and _covered(written) == 2 * BLOCK
    assert b"".join(written[k] for k in sorted(written)) == PIECE[:2 * BLOCK]


def test_blocks_sent_out_of_order_are_caught_at_the_first_one(holder):
    swapped = PIECE[BLOCK:2 * BLOCK] + PIECE[:BLOCK] + PIECE[2 * BLOCK:]
    written, verified, failure, _ = _fetch(holder(lambda w, done: w.write(swapped)).address)
    assert str(failure).startswith("digest mismatch in block 0")
    assert written == {} and verified == []


def test_a_holder_that_sends_a_block_and_stalls_costs_the_piece_timeout(holder):
    def stall(w, done):
        w.write(PIECE[:BLOCK])
        w.flush()
        done.wait(30)
    written, verified, failure, took = _fetch(holder(stall).address, timeout_s=1.5)
    assert str(failure).startswith("transfer broke")   # not the copy's fault: nothing doubted
    assert not copy_suspect(str(failure))
    assert verified == [BLOCK] and _covered(written) == BLOCK
    assert 1.4 < took < 10


def test_a_relay_that_stops_mid_piece_is_a_stopped_relay_not_a_short_copy(holder):
    def stop(w, done):
        w.write(PIECE[:3 * BLOCK])
        w.flush()
        w.connection.shutdown(socket.SHUT_RDWR)   # its own source failed: it ends the body short
    written, verified, failure, _ = _fetch(holder(stop, relay=True).address)
    assert str(failure) == "%s: short piece: %d of %d bytes" % (RELAY_STOPPED, 3 * BLOCK, len(PIECE))
    assert not copy_suspect(str(failure))
    assert verified == [BLOCK, 2 * BLOCK, 3 * BLOCK]


@pytest.mark.time_limit(30)
def test_a_relay_whose_blocks_come_seconds_apart_is_not_given_up_on(holder):
    """A relay fed one of the fan-out's 16 streams on a slow link passes on a block
    every few seconds (a 64 KiB block at 6.25 Mbit/s / 16: 1.3 s, more when TCP
    backs off): that is its source's pace, which the relay judges (it ends the
    body short when its source stalls); its reader waits as for any holder."""
    def slowly(w, done):
        w.write(PIECE[:BLOCK])
        w.flush()
        done.wait(2 * RELAY_WAIT_S + 0.5)   # longer than the old fixed 2 x RELAY_WAIT_S
        w.write(PIECE[BLOCK:])
    written, verified, failure, _ = _fetch(holder(slowly, relay=True).address, timeout_s=15.0)
    assert failure is None, failure
    assert b"".join(written[k] for k in sorted(written)) == PIECE


@pytest.mark.time_limit(30)
@pytest.mark.parametrize("over_tls", [False, True])
def test_a_relay_far_behind_the_downloads_recent_fetches_is_left_unblamed(holder, tmp_path, over_tls):
    """Its source is slow (a peer under a rate limit), not the swarm: where the
    download's last fetch came at 100 MB/s, a relay passing on a block a second
    is left once a second has told (at its second block), as a relay that stopped
    (not its copy's fault)."""
    def trickle(w, done):
        for at in range(0, len(PIECE), BLOCK):
            w.write(PIECE[at:at + BLOCK])
            w.flush()
            if done.wait(1.2):
                return
    paces = Paces()
    paces.note(100e6)
    server_tls = client_tls = None
    if over_tls:
        certs = Certs(str(tmp_path / "certs"))
        server_tls = TLS(TLSOptions(**certs.mtls("holder")))
        client_tls = TLS(TLSOptions(**certs.mtls("peer")))
    fetcher = PieceFetcher(15.0, connect_timeout_s=2.0, paces=paces, tls=client_tls)
    try:
        with pytest.raises(PieceFailed) as failed:
            fetcher.fetch(holder(trickle, relay=True, tls=server_tls).address, "0" * 64, _order(),
                          lambda offset, chunk: None)
    finally:
        fetcher.close()
    reason = str(failed.value)
    assert reason == "%s: short piece: %d of %d bytes, too slow" % (RELAY_STOPPED, 2 * BLOCK, len(PIECE))
    assert relay_blameless(reason) and not copy_suspect(reason)


def test_a_relay_that_lies_about_a_block_is_blamed_for_it(holder):
    lie = PIECE[:BLOCK] + b"\xee" * (len(PIECE) - BLOCK)
    _, verified, failure, _ = _fetch(holder(lambda w, done: w.write(lie), relay=True).address)
    assert str(failure).startswith("digest mismatch in block 1")   # it verified what it sends
    assert verified == [BLOCK]


def test_a_block_list_that_does_not_end_with_the_piece_digest_is_not_trusted(holder):
    """The last block's digest is the piece's (v3): a list ending otherwise is not
    of this piece, so no block is passed on by its word and the piece is checked
    whole, against its own digest."""
    order = _order(sha256="0" * 64)   # the blocks are right, the piece digest not
    written, verified, failure, _ = _fetch(holder(lambda w, done: w.write(PIECE)).address, order=order)
    assert str(failure) == "digest mismatch" and verified == []
    other = tuple(block_digests(content(len(PIECE), seed=82), BLOCK))   # the piece digest right
    written, verified, failure, _ = _fetch(holder(lambda w, done: w.write(PIECE)).address,
                                           order=_order(blocks=other))
    assert failure is None and verified == []
    assert b"".join(written[k] for k in sorted(written)) == PIECE


def test_a_bad_short_last_block_is_caught_without_the_piece_hash(holder):
    lie = PIECE[:-1] + bytes([PIECE[-1] ^ 1])   # the last byte of the last, short block
    written, verified, failure, _ = _fetch(holder(lambda w, done: w.write(lie)).address)
    assert str(failure) == "digest mismatch in block 4 (bytes %d-%d of the piece)" % (
        4 * BLOCK, len(PIECE) - 1)
    assert _covered(written) == 4 * BLOCK and verified[-1] == 4 * BLOCK


def test_a_block_list_of_other_bytes_is_caught_at_its_first_block_and_nothing_is_written(holder):
    """A wrong block list that still ends with the right piece digest: the holder's
    right bytes fail at block 0, so nothing of the piece is kept on the blocks' word."""
    other = tuple(block_digests(content(len(PIECE), seed=82), BLOCK))[:-1]
    other += (hashlib.sha256(PIECE).hexdigest(),)
    written, verified, failure, _ = _fetch(holder(lambda w, done: w.write(PIECE)).address,
                                           order=_order(blocks=other))
    assert str(failure).startswith("digest mismatch in block 0")
    assert written == {} and verified == []


def test_a_piece_without_block_digests_is_still_checked_whole(holder):
    lie = PIECE[:-1] + bytes([PIECE[-1] ^ 1])
    written, verified, failure, _ = _fetch(holder(lambda w, done: w.write(lie)).address,
                                           order=_order(blocks=()))
    assert str(failure) == "digest mismatch"
    assert verified == []
    good = _fetch(holder(lambda w, done: w.write(PIECE)).address, order=_order(blocks=()))
    assert good[2] is None and b"".join(good[0][k] for k in sorted(good[0])) == PIECE


def test_bytes_the_reader_read_ahead_at_a_block_end_do_not_stall_the_last_block(holder):
    """Blocks of 14000 bytes, sent at once: the first read takes what came with the
    headers (~8 KiB), the rest of block 0 is a read smaller than the socket reader's
    own buffer, which reads ahead into block 1. Those bytes must be taken before the
    next read asks the kernel (SO_RCVLOWAT) for all of block 1: it would wait for
    bytes already read, until the holder hung up (the testbed: 30 s) or timed out."""
    size = 14000
    piece = content(2 * size, seed=83)
    order = PieceOrder(num=0, start=0, size=len(piece), sha256=hashlib.sha256(piece).hexdigest(),
                       holder="h", addr="", block_size=size, blocks=tuple(block_digests(piece, size)))
    def send_and_stay(w, done):   # a keep-alive holder: no hang-up ends a read early
        w.write(piece)
        w.flush()
        done.wait(30)
    written, verified, failure, _ = _fetch(holder(send_and_stay, size=len(piece)).address,
                                              timeout_s=3.0, order=order)
    assert failure is None, failure
    assert b"".join(written[k] for k in sorted(written)) == piece and verified == [size, 2 * size]
