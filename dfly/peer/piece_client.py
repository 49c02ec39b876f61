"""The uploader's client: fetch one piece from a holder (peer or supernode).

The data path streams through one reusable buffer per worker: recv_into, feed
sha256, pwrite at the piece's offset. A piece is good only if the holder sent
exactly `size` bytes whose sha256 is the one the supernode recorded; anything
else raises PieceFailed with a reason the scheduler is told.
"""
import hashlib
import http.client
import socket
import time
from typing import Callable, Dict, Optional

from dfly.httpd import parse_hostport
from dfly.protocol.messages import PieceOrder
from dfly.protocol.ratelimit import TokenBucket

BUFFER_BYTES = 1 << 20


class PieceFailed(Exception):
    """The holder did not deliver a good piece; str() is the reason."""


class PieceFetcher:
    """One worker's connections (one keep-alive per holder) and buffer."""

    def __init__(self, timeout_s: float, bucket: Optional[TokenBucket] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.timeout_s = timeout_s
        self.bucket = bucket
        self.clock = clock
        self._conns: Dict[str, http.client.HTTPConnection] = {}
        self._buffer = bytearray(BUFFER_BYTES)

    def fetch(self, addr: str, task_id: str, order: PieceOrder, write) -> None:
        """Fetch `order` from `addr`, calling write(offset, bytes) as data arrives."""
        path = "/v1/tasks/%s/pieces/%d" % (task_id, order.num)
        for attempt in (1, 2):   # a pooled connection the holder closed gets one retry
            conn = self._conn(addr)
            reused = conn.sock is not None
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                break
            except (http.client.HTTPException, OSError) as e:
                self._drop(addr)
                if attempt == 2 or not reused:
                    raise PieceFailed("unreachable: %s" % e)
        try:
            self._receive(response, order, write)
        except PieceFailed:
            self._drop(addr)
            raise
        except (http.client.HTTPException, OSError) as e:
            self._drop(addr)
            raise PieceFailed("transfer broke: %s" % e)

    def _receive(self, response, order: PieceOrder, write) -> None:
        if response.status != 200:
            raise PieceFailed("holder answered %d" % response.status)
        if response.length != order.size:
            raise PieceFailed("holder offers %s bytes, piece has %d" % (response.length, order.size))
        hasher = hashlib.sha256()
        view = memoryview(self._buffer)
        got = 0
        while got < order.size:
            n = response.readinto(view[:min(BUFFER_BYTES, order.size - got)])
            if not n:
                raise PieceFailed("short piece: %d of %d bytes" % (got, order.size))
            chunk = view[:n]
            hasher.update(chunk)
            write(order.start + got, chunk)
            got += n
            self._throttle(n)
        if hasher.hexdigest() != order.sha256:
            raise PieceFailed("digest mismatch")

    def _throttle(self, nbytes: int) -> None:
        if self.bucket is not None:
            delay = self.bucket.reserve(nbytes, self.clock())
            if delay > 0:
                time.sleep(delay)

    def _conn(self, addr: str) -> http.client.HTTPConnection:
        conn = self._conns.get(addr)
        if conn is None:
            host, port = parse_hostport(addr, 80)
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout_s)
            self._conns[addr] = conn
        if conn.sock is None:
            try:
                conn.connect()
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as e:
                self._drop(addr)
                raise PieceFailed("unreachable: %s" % e)
        return conn

    def _drop(self, addr: str) -> None:
        conn = self._conns.pop(addr, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for addr in list(self._conns):
            self._drop(addr)
