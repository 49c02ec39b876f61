"""The uploader's client: fetch one piece from a holder (peer or supernode).

The data path streams: read, feed sha256, pwrite at the piece's offset. A
piece is good only if the holder sent exactly `size` bytes whose sha256 is the
one the supernode recorded; anything else raises PieceFailed with a reason
the scheduler is told.

When the order names the piece's block digests (protocol v3: the sha256 of
the piece up to each block's end), each block is checked as soon as its last
byte is in, by the piece's one running hash, and only then written: the file
never holds a byte of the piece that did not verify, so `on_block` may tell
the uploader at once that the piece's first N bytes are good to pass on
(cut-through), and a bad block ends the fetch there ("digest mismatch in
block K"), not a piece later. The last block's digest is the piece's sha256,
so a piece whose every block verified is verified, with one sha256 per byte;
an order whose list does not end with the piece's digest is not trusted for
its blocks: that piece is checked whole. A piece without block digests is
checked whole, against its own digest. A holder relaying a piece it
still receives (`X-Dfly-Relay`) ends its body short when its own fetch fails or
stalls (storage.relay_deadline): that is "relay stopped" (its source's fault,
not its copy's). How long a relay's next block may take follows its source's
pace, which only the relay sees (a fixed two seconds gave up on healthy
streams of the fan-out on slow links): its reads get `timeout_s` as any
holder's (a relay silent that long has stalled itself: blamed), and at each
read the relay is left ("relay stopped: ... too slow", blameless) once it lags
far behind the fastest fetches the download made lately (relay_lags): its
source is slow, not the swarm (a peer on a slow link or under a rate limit),
and the piece is to be had faster elsewhere.

A holder gets `connect_timeout_s` to accept the connection and again to send
the first byte of its answer (a live one does both in a round trip); only then
does each read get the longer `timeout_s`. A stopped or overloaded holder
thus costs a worker seconds, not the piece timeout, before the piece is
re-planned from someone else.

Body reads ask the kernel to complete only once STEP_BYTES are there
(SO_RCVLOWAT): on a link slower than the CPU a plain read wakes for every
packet or two, and those wake-ups (a thread switch, the GIL, a poll and a recv
each) were most of a download's CPU. Over TLS the body is read in steps into
one buffer instead, without the mark (see _receive_tls).
"""
import hashlib
import http.client
import io
import socket
import time
from typing import Callable, Dict, Optional
from urllib.parse import urlencode

from dfly.httpd import Paces
from dfly.protocol.address import loopback_for, parse_address
from dfly.protocol.messages import (
    PEER_SECRET_HEADER,
    RELAY_HEADER,
    RELAY_STOPPED,
    SUPERNODE,
    PieceOrder,
)
from dfly.protocol.piecetoken import HEADER as PIECE_TOKEN_HEADER
from dfly.protocol.ratelimit import TokenBucket
from dfly.tls import TLS, http_connection, refusal

STEP_BYTES = 256 << 10
READER_BUFFER_BYTES = io.DEFAULT_BUFFER_SIZE   # a response's socket reader's own buffer
TLS_SLACK_BYTES = 64 << 10   # more than one TLS record (16 KiB and its overhead) with room
SO_RCVLOWAT = getattr(socket, "SO_RCVLOWAT", None)


RELAY_LAG_SHARE = 1 / 64     # a relay this far under the fastest recent fetch's pace lags
RELAY_ALLOWANCE_BYTES = 256 << 10   # ... once it is this much behind (its start, TCP backing off)
RELAY_JUDGED_AFTER_S = 1.0         # ... and judged only from this far into its body


def relay_lags(taken: int, elapsed: float, best_pace: float) -> bool:
    """Is a relay that passed on `taken` bytes in `elapsed` seconds far behind the
    fastest recent fetch (`best_pace`, bytes a second)? The fan-out's streams on a
    slow link run at a sixteenth of it, a whole copy at all of it: a relay is left
    only 64 times slower than that, and RELAY_ALLOWANCE_BYTES behind. Pure."""
    return elapsed >= RELAY_JUDGED_AFTER_S and best_pace > 0 \
        and taken + RELAY_ALLOWANCE_BYTES < RELAY_LAG_SHARE * best_pace * elapsed


def _set_lowat(sock: socket.socket, nbytes: int) -> int:
    if SO_RCVLOWAT is not None:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVLOWAT, nbytes)
    return nbytes


class PieceFailed(Exception):
    """The holder did not deliver a good piece; str() is the reason."""


class PieceFetcher:
    """One worker's connections (one keep-alive per holder) and buffer."""

    def __init__(self, timeout_s: float, bucket: Optional[TokenBucket] = None,
                 clock: Callable[[], float] = time.monotonic, peer_id: str = "",
                 connect_timeout_s: float = 0.0, tls: Optional[TLS] = None,
                 proof: Callable[[], str] = lambda: "", paces: Optional[Paces] = None):
        """`peer_id`: ours, told to the supernode with each piece it serves us, with
        `proof()`, the secret it gave us (sent to the supernode only, never to a peer).
        `connect_timeout_s`: for the connection and for the first byte (0: timeout_s).
        `tls`: dial holders with TLS (the cluster's setting). `paces`: the download's
        recent good fetches (all its workers'), which a relay is judged against
        (relay_lags)."""
        self.timeout_s = timeout_s
        self.connect_timeout_s = min(connect_timeout_s or timeout_s, timeout_s)
        self.tls = tls
        self.peer_id = peer_id
        self.proof = proof
        self.bucket = bucket
        self.clock = clock
        self.received = 0   # bytes of the last fetch's body that arrived (a failed one's too)
        self.moved = 0      # bytes of every fetch's body that arrived: whether any still do
        self.relayed = False   # the last fetch's holder said it was still fetching the piece
        self.paces = paces if paces is not None else Paces()
        self._began = 0.0   # when the last fetch was asked for
        self._conns: Dict[str, http.client.HTTPConnection] = {}
        self._step: Optional[memoryview] = None   # the plain body's read buffer, reused

    def fetch(self, addr: str, task_id: str, order: PieceOrder, write,
              on_block: Optional[Callable[[int], None]] = None) -> None:
        """Fetch `order` from `addr`, calling write(offset, data) as data arrives
        (with block digests: as each block verified, then on_block(bytes of the
        piece verified so far)); `data` (a view of a buffer reused for the next
        read) is valid during the call."""
        self.received, self.relayed = 0, False
        self._began = self.clock()
        path = "/v1/tasks/%s/pieces/%d" % (task_id, order.num)
        headers = {}
        if self.peer_id:   # who the piece token was minted for
            path += "?" + urlencode({"peer": self.peer_id})
        if order.token:
            headers[PIECE_TOKEN_HEADER] = order.token
        if order.holder == SUPERNODE and self.peer_id:   # it frees our slot there when sent
            secret = self.proof()
            if secret:
                headers[PEER_SECRET_HEADER] = secret
        for attempt in (1, 2):   # a pooled connection the holder closed gets one retry
            reused = addr in self._conns and self._conns[addr].sock is not None
            conn = self._conn(addr)
            try:
                sock = conn.sock   # getresponse() drops it from conn on "Connection: close"
                sock.settimeout(self.connect_timeout_s)   # the first byte comes at once, or never
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                break
            except socket.timeout as e:   # a holder that stopped: no second wait for it
                self._drop(addr)
                raise PieceFailed("no answer within %.1fs: %s" % (self.connect_timeout_s, e))
            except (http.client.HTTPException, OSError) as e:
                self._drop(addr)
                if attempt == 2 or not reused or refusal(e):
                    raise PieceFailed(_unreachable(e, self.tls))
        relay = self.relayed = response.getheader(RELAY_HEADER) is not None
        try:
            sock.settimeout(self.timeout_s)
            self._receive(response, sock, order, write, on_block)
            self.paces.note(order.size / max(1e-6, self.clock() - self._began))
        except PieceFailed as e:
            self._drop(addr)
            if relay and str(e).startswith("short piece"):
                raise PieceFailed("%s: %s" % (RELAY_STOPPED, e))
            raise
        except (http.client.HTTPException, OSError) as e:
            self._drop(addr)
            raise PieceFailed("transfer broke: %s" % e)

    def _receive(self, response, sock: socket.socket, order: PieceOrder, write, on_block) -> None:
        if response.status != 200:
            raise PieceFailed("holder answered %d" % response.status)
        if response.length != order.size:
            raise PieceFailed("holder offers %s bytes, piece has %d" % (response.length, order.size))
        if order.blocks and order.blocks[-1] == order.sha256:
            blocks = _BlockCheck(order, write, on_block)
            if self.tls is not None:
                self._receive_tls(response, order, blocks.take, hasher=None, step=order.block_size)
            else:
                self._receive_plain(response, sock, order, blocks.take, hasher=None, step=order.block_size)
            response.read()   # reads nothing; closes the response so the connection is reused
            if blocks.verified != order.size:   # (cannot be: every read lands in a block)
                raise PieceFailed("digest mismatch: %d of %d bytes verified" % (blocks.verified, order.size))
            return   # every block verified, the last one's digest the piece's
        hasher = hashlib.sha256()
        if self.tls is not None:
            self._receive_tls(response, order, write, hasher)
        else:
            self._receive_plain(response, sock, order, write, hasher)
        response.read()   # reads nothing; closes the response so the connection is reused
        if hasher.hexdigest() != order.sha256:
            raise PieceFailed("digest mismatch")

    def _receive_plain(self, response, sock: socket.socket, order: PieceOrder, write, hasher,
                       step: int = 0) -> None:
        """`step`: reads stop at multiples of it (block ends), so none spans two blocks,
        and each lands at its place in its block: a block's bytes stay in the buffer,
        one run, until it is complete (_BlockCheck writes it from there)."""
        got, lowat = 0, 1
        # First what came in with the headers; then one read at a time, each asking the
        # kernel to wait for no more than the body still has to bring (a partial read,
        # which memory pressure can cause, only lowers the next mark).
        # Each read goes into the worker's one buffer, straight from the response's
        # buffered socket reader (one recv, as read1 does: read1 made a new 256 KiB
        # object per read, an allocation and ~60 page faults each time); http.client
        # is told the body is consumed once it is (its length: 0).
        buffered = len(response.peek()) if order.size else 0
        body, buffer = response.fp, self._buffer(max(STEP_BYTES, step))
        while got < order.size:
            want, at = min(buffered or STEP_BYTES, order.size - got), 0
            if step:
                at = got % step
                want = min(want, step - at)
            if not buffered and want != lowat:
                lowat = _set_lowat(sock, want)
            self._judge_relay(got, order.size)
            held, buffered = buffered, 0
            n = body.readinto1(buffer[at:at + want])
            if not n:
                raise PieceFailed("short piece: %d of %d bytes" % (got, order.size))
            chunk = buffer[at:at + n]
            if hasher is not None:
                hasher.update(chunk)
            got += n
            self.received = got   # before write: a bad block's bytes count as received
            self.moved += n
            write(order.start + got - n, chunk)
            self._throttle(n)
            if got < order.size and (n < held or (not held and want <= READER_BUFFER_BYTES)):
                # The reader may still hold bytes: some it held that a block's end kept
                # this read from taking, or some it read ahead to fill its own buffer (a
                # read no larger than that). They go next, under no mark: a mark counts
                # the kernel's bytes only, and one that also counted these would wait for
                # bytes that never come (at a piece's last block, until the holder hangs up).
                if lowat != 1:
                    lowat = _set_lowat(sock, 1)
                buffered = len(response.peek())
        response.length = 0
        if lowat != 1:
            _set_lowat(sock, 1)   # the next response's headers are a few hundred bytes

    def _judge_relay(self, got: int, size: int) -> None:
        """Leave a relay that lags (relay_lags), before each read of its body."""
        if self.relayed and relay_lags(got, self.clock() - self._began, self.paces.best()):
            raise PieceFailed("short piece: %d of %d bytes, too slow" % (got, size))

    def _receive_tls(self, response, order: PieceOrder, write, hasher, step: int = 0) -> None:
        # A TLS read returns one record (16 KiB) at most: read1 would allocate a whole
        # step per record, and hashing and writing each record is many more calls.
        # Steps are read into one buffer instead, the records decrypted straight into it.
        # No SO_RCVLOWAT here: poll would wait for bytes the receive window may never
        # let in while OpenSSL asks for one record (measured: a stall until the timeout).
        # With blocks (`step`), each read lands at its place in its block, as in
        # _receive_plain.
        buffer = memoryview(bytearray(min(step or STEP_BYTES, order.size)))
        got = 0
        while got < order.size:
            room, at = min(STEP_BYTES, order.size - got), 0
            if step:
                at = got % step
                room = min(room, step - at)
            view = buffer[at:at + room]
            self._judge_relay(got, order.size)
            n = response.readinto(view)
            if not n:
                raise PieceFailed("short piece: %d of %d bytes" % (got, order.size))
            if hasher is not None:
                hasher.update(view[:n])
            got += n
            self.received = got
            self.moved += n
            write(order.start + got - n, view[:n])
            self._throttle(n)

    def _buffer(self, size: int) -> memoryview:
        if self._step is None or len(self._step) < size:   # larger blocks: a larger one
            self._step = memoryview(bytearray(size))
        return self._step

    def _throttle(self, nbytes: int) -> None:
        if self.bucket is not None:
            delay = self.bucket.reserve(nbytes, self.clock())
            if delay > 0:
                time.sleep(delay)

    def _conn(self, addr: str) -> http.client.HTTPConnection:
        conn = self._conns.get(addr)
        if conn is None:
            try:
                host, port = parse_address(addr, 80)
            except ValueError as e:   # the supernode named a holder we cannot read
                raise PieceFailed("bad holder address: %s" % e)
            conn = http_connection(self.tls, loopback_for(host), port, self.connect_timeout_s)
            self._conns[addr] = conn
        if conn.sock is None:
            try:
                conn.connect()
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as e:
                self._drop(addr)
                raise PieceFailed(_unreachable(e, self.tls))
        return conn

    def _drop(self, addr: str) -> None:
        conn = self._conns.pop(addr, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for addr in list(self._conns):
            self._drop(addr)


class _BlockCheck:
    """Takes a piece's bytes in order (no read spans two blocks; the reader keeps
    each block's parts in place until the block is complete), checks each block
    when its last byte is in against its digest (the piece's running sha256 so
    far), and only then writes it."""

    def __init__(self, order: PieceOrder, write, on_block):
        self.order = order
        self.write = write
        self.on_block = on_block
        self.prefix = hashlib.sha256()   # of the piece's bytes so far
        self.parts = []      # the current block's bytes, not written yet
        self.filled = 0      # bytes of the current block in
        self.verified = 0    # bytes of the piece verified and written

    def take(self, offset: int, chunk) -> None:
        order = self.order
        self.prefix.update(chunk)
        self.parts.append(chunk)
        self.filled += len(chunk)
        if self.filled < min(order.block_size, order.size - self.verified):
            return
        index = self.verified // order.block_size
        if self.prefix.hexdigest() != order.blocks[index]:
            raise PieceFailed("digest mismatch in block %d (bytes %d-%d of the piece)"
                              % (index, self.verified, self.verified + self.filled - 1))
        at = order.start + self.verified
        for part in self.parts:
            self.write(at, part)
            at += len(part)
        self.verified += self.filled
        self.parts, self.filled = [], 0
        if self.on_block is not None:
            self.on_block(self.verified)


def _unreachable(error: Exception, tls: Optional[TLS] = None) -> str:
    why = refusal(error, tls)
    return "TLS handshake failed: %s" % why if why else "unreachable: %s" % error
