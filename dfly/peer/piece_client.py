"""The uploader's client: fetch one piece from a holder (peer or supernode).

The data path streams: read, feed sha256, pwrite at the piece's offset. A
piece is good only if the holder sent exactly `size` bytes whose sha256 is the
one the supernode recorded; anything else raises PieceFailed with a reason
the scheduler is told.

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
import socket
import time
from typing import Callable, Dict, Optional
from urllib.parse import urlencode

from dfly.protocol.address import loopback_for, parse_address
from dfly.protocol.messages import PEER_SECRET_HEADER, SUPERNODE, PieceOrder
from dfly.protocol.piecetoken import HEADER as PIECE_TOKEN_HEADER
from dfly.protocol.ratelimit import TokenBucket
from dfly.tls import TLS, http_connection, refusal

STEP_BYTES = 256 << 10
TLS_SLACK_BYTES = 64 << 10   # more than one TLS record (16 KiB and its overhead) with room
SO_RCVLOWAT = getattr(socket, "SO_RCVLOWAT", None)


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
                 proof: Callable[[], str] = lambda: ""):
        """`peer_id`: ours, told to the supernode with each piece it serves us, with
        `proof()`, the secret it gave us (sent to the supernode only, never to a peer).
        `connect_timeout_s`: for the connection and for the first byte (0: timeout_s).
        `tls`: dial holders with TLS (the cluster's setting)."""
        self.timeout_s = timeout_s
        self.connect_timeout_s = min(connect_timeout_s or timeout_s, timeout_s)
        self.tls = tls
        self.peer_id = peer_id
        self.proof = proof
        self.bucket = bucket
        self.clock = clock
        self.received = 0   # bytes of the last fetch's body that arrived (a failed one's too)
        self._conns: Dict[str, http.client.HTTPConnection] = {}
        self._step: Optional[memoryview] = None   # the plain body's read buffer, reused

    def fetch(self, addr: str, task_id: str, order: PieceOrder, write) -> None:
        """Fetch `order` from `addr`, calling write(offset, data) as data arrives;
        `data` (a view of a buffer reused for the next read) is valid during the call."""
        self.received = 0
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
        try:
            sock.settimeout(self.timeout_s)
            self._receive(response, sock, order, write)
        except PieceFailed:
            self._drop(addr)
            raise
        except (http.client.HTTPException, OSError) as e:
            self._drop(addr)
            raise PieceFailed("transfer broke: %s" % e)

    def _receive(self, response, sock: socket.socket, order: PieceOrder, write) -> None:
        if response.status != 200:
            raise PieceFailed("holder answered %d" % response.status)
        if response.length != order.size:
            raise PieceFailed("holder offers %s bytes, piece has %d" % (response.length, order.size))
        hasher = hashlib.sha256()
        if self.tls is not None:
            self._receive_tls(response, order, write, hasher)
        else:
            self._receive_plain(response, sock, order, write, hasher)
        response.read()   # reads nothing; closes the response so the connection is reused
        if hasher.hexdigest() != order.sha256:
            raise PieceFailed("digest mismatch")

    def _receive_plain(self, response, sock: socket.socket, order: PieceOrder, write, hasher) -> None:
        got, lowat = 0, 1
        # First what came in with the headers; then one read at a time, each asking the
        # kernel to wait for no more than the body still has to bring (a partial read,
        # which memory pressure can cause, only lowers the next mark).
        # Each read goes into the worker's one buffer, straight from the response's
        # buffered socket reader (one recv, as read1 does: read1 made a new 256 KiB
        # object per read, an allocation and ~60 page faults each time); http.client
        # is told the body is consumed once it is (its length: 0).
        buffered = len(response.peek()) if order.size else 0
        body, buffer = response.fp, self._buffer()
        while got < order.size:
            want = min(buffered or STEP_BYTES, order.size - got)
            if not buffered and want != lowat:
                lowat = _set_lowat(sock, want)
            buffered = 0
            n = body.readinto1(buffer[:want])
            if not n:
                raise PieceFailed("short piece: %d of %d bytes" % (got, order.size))
            chunk = buffer[:n]
            hasher.update(chunk)
            write(order.start + got, chunk)
            got += n
            self.received = got
            self._throttle(n)
        response.length = 0
        if lowat != 1:
            _set_lowat(sock, 1)   # the next response's headers are a few hundred bytes

    def _receive_tls(self, response, order: PieceOrder, write, hasher) -> None:
        # A TLS read returns one record (16 KiB) at most: read1 would allocate a whole
        # step per record, and hashing and writing each record is many more calls.
        # Steps are read into one buffer instead, the records decrypted straight into it.
        # No SO_RCVLOWAT here: poll would wait for bytes the receive window may never
        # let in while OpenSSL asks for one record (measured: a stall until the timeout).
        buffer = memoryview(bytearray(min(STEP_BYTES, order.size)))
        got = 0
        while got < order.size:
            view = buffer[:min(len(buffer), order.size - got)]
            n = response.readinto(view)
            if not n:
                raise PieceFailed("short piece: %d of %d bytes" % (got, order.size))
            hasher.update(view[:n])
            write(order.start + got, view[:n])
            got += n
            self.received = got
            self._throttle(n)

    def _buffer(self) -> memoryview:
        if self._step is None:
            self._step = memoryview(bytearray(STEP_BYTES))
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


def _unreachable(error: Exception, tls: Optional[TLS] = None) -> str:
    why = refusal(error, tls)
    return "TLS handshake failed: %s" % why if why else "unreachable: %s" % error
