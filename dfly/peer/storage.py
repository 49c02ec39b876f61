"""Byte I/O for one download: pieces written at their offsets into one file.

A piece's bytes may land in the file before its digest is checked (pieces
stream through a small buffer, so memory stays flat whatever the piece size),
but a piece counts as held, and so is served onward or reported done, only
after it verified. The file keeps a temporary name until every piece is held.
Every held piece is of one content version (the supernode's id of the source
bytes the digests were cut from); when the source changed mid-download, the
download starts over and the held pieces are forgotten.

A piece still arriving with block digests is written only block by block as
each verified (piece_client.py): `arriving` says how many of its first bytes
are good, and the uploader passes those on at once (cut-through), waiting for
more with `verified_end`. A fetch that fails drops the count: a relay of it
stops there. How long a relay waits for the next block follows the pace its
blocks have come at (relay_deadline): on a slow link, or fed one share of a
busy link by the fan-out, a block takes seconds, and a fixed wait cut healthy
streams short (at 6.25 Mbit/s, 16 hosts: 3.2x the bound, the origin's bytes
sent 2.5 times).
"""
import os
import threading
import time
from typing import Callable, Dict, Optional, Set, Tuple

from dfly.errors import LocalIOError
from dfly.protocol.pieces import piece_count, piece_range

RELAY_PACE_SLACK = 4.0      # a source this many times slower than its own blocks' pace so far has stalled
FIRST_BLOCK_WAIT_S = 60.0   # a safety net: the fetch's own timeouts end it sooner, and wake its relays


def relay_deadline(began: float, blocks: int, last: float, floor_s: float) -> float:
    """When a relay gives up waiting for the next verified block of a piece whose
    fetch began at `began` and has verified `blocks` blocks, the last at `last`:
    `floor_s` after the last, or RELAY_PACE_SLACK times the blocks' mean time if
    that is longer. Before the first block nothing tells the pace: the fetch's
    own timeouts bound the wait. Pure."""
    if blocks <= 0:
        return began + FIRST_BLOCK_WAIT_S
    return last + max(floor_s, RELAY_PACE_SLACK * (last - began) / blocks)


class PieceFile:
    def __init__(self, path: str, truncate: bool = True, shown: str = "", fd: Optional[int] = None,
                 clock: Callable[[], float] = time.monotonic):
        """`shown`: the name errors give (the user's file, not its temporary name);
        `fd`: `path` already open (output.create_part's), taken over; `clock`: what
        the blocks' arrival is timed by (relay_deadline)."""
        self.path = path
        self.clock = clock
        self.shown = shown or path
        if fd is not None:
            self.fd = fd
        else:
            try:
                self.fd = os.open(path, os.O_RDWR | os.O_CREAT | (os.O_TRUNC if truncate else 0), 0o644)
            except OSError as e:
                raise LocalIOError("cannot write %s: %s" % (self.shown, e.strerror or e))
        self.length: Optional[int] = None
        self.expected_length: Optional[int] = None   # the source's Content-Length, for progress
        self.piece_size = 0
        self.held: Set[int] = set()
        self.digests: Dict[int, str] = {}   # the sha256 each held piece was verified against
        self.arriving: Dict[int, int] = {}  # piece -> its first bytes verified so far (fetch running)
        self._clock: Dict[int, Tuple[float, int, float]] = {}   # arriving -> (began, blocks, last one at)
        lock = self._lock = threading.RLock()
        self.cond = threading.Condition(lock)
        # The running digest (verify.py) waits on this one, woken only when the held
        # prefix grows: not by every piece that lands out of order.
        self.prefix_grown = threading.Condition(lock)
        self._prefix = 0   # pieces 0.._prefix-1 are held (moved on by mark_held, reset with held)
        # Relays waiting in verified_end, per piece: only they care about `arriving`,
        # each only about its own piece. Each block (4 a piece) woke every waiter on
        # `cond` (the running digest above all), for nothing; and with one condition for
        # all relays, each block of any of the 16 pieces a peer of the fan-out takes
        # in at once woke the 15 relays of its one fed piece, 15 wake-ups for none
        # useful, ~3600 per peer per 64 MiB.
        self._relay_conds: Dict[int, threading.Condition] = {}
        self._relays_waiting: Dict[int, int] = {}
        self.content_version = ""   # of the held pieces; "" until a supernode named one
        self.restarts = 0           # times held pieces were dropped for a new content version

    def start_over(self, content_version: str) -> None:
        """Forget every held piece (they are of other content) and the geometry
        (the new content may be cut otherwise); pieces of `content_version` follow."""
        with self.cond:
            self.held.clear()
            self._prefix = 0
            self.digests.clear()
            self.arriving.clear()
            self._clock.clear()
            self.length, self.piece_size = None, 0
            self.content_version = content_version
            self.restarts += 1
            self.cond.notify_all()
            self._wake_relays()

    @classmethod
    def reopen(cls, path: str, length: int, piece_size: int, held: Set[int],
               content_version: str = "") -> "PieceFile":
        """A finished file opened again to rewrite some pieces in place (they were
        found damaged); the others count as held, of `content_version`."""
        storage = cls(path, truncate=False)
        storage.length, storage.piece_size, storage.held = length, piece_size, set(held)
        storage.content_version = content_version
        return storage

    def set_geometry(self, length: Optional[int], piece_size: int) -> None:
        with self.cond:
            if self.piece_size and piece_size != self.piece_size:
                raise LocalIOError("piece size changed mid-download (%d -> %d)"
                                   % (self.piece_size, piece_size))
            self.piece_size = piece_size
            if length is not None and length != self.length:
                self.length = length
                self.cond.notify_all()   # readers waiting for the length (filling.py)
                try:
                    os.ftruncate(self.fd, length)
                except OSError as e:
                    raise LocalIOError("cannot size %s: %s" % (self.shown, e.strerror or e))

    def forget(self) -> None:
        """Hold nothing and know no geometry: the whole file is about to be rewritten
        (a source that serves no ranges, or another version of the file)."""
        with self.cond:
            self.held = set()
            self._prefix = 0
            self.arriving.clear()
            self._clock.clear()
            self.length, self.piece_size = None, 0
            self._wake_relays()

    def write(self, offset: int, data) -> None:
        try:
            while data:
                n = os.pwrite(self.fd, data, offset)
                data, offset = data[n:], offset + n
        except OSError as e:
            raise LocalIOError("cannot write %s: %s" % (self.shown, e.strerror or e))

    def piece_begun(self, num: int) -> None:
        """A fetch of piece `num` begins: nothing of it is verified yet."""
        with self.cond:
            self.arriving[num] = 0
            now = self.clock()
            self._clock[num] = (now, 0, now)
            self._wake_relays(num)

    def block_verified(self, num: int, verified: int) -> None:
        """The first `verified` bytes of piece `num` are verified and written."""
        with self.cond:
            if num in self.arriving:
                self.arriving[num] = verified
                began, blocks, _ = self._clock[num]
                self._clock[num] = (began, blocks + 1, self.clock())
                self._wake_relays(num)

    def piece_abandoned(self, num: int) -> None:
        """The fetch of piece `num` failed: what relays it stops."""
        with self.cond:
            self._clock.pop(num, None)
            if self.arriving.pop(num, None) is not None:
                self._wake_relays(num)

    def _wake_relays(self, num: Optional[int] = None) -> None:
        """Wake the relays waiting for piece `num` (None: for any piece)."""
        if num is not None:
            cond = self._relay_conds.get(num)
            if cond is not None:
                cond.notify_all()
            return
        for cond in self._relay_conds.values():
            cond.notify_all()

    def arriving_slice(self, num: int):
        """(offset, size) of piece `num` while it arrives, or None."""
        if num not in self.arriving or self.length is None or not self.piece_size:
            return None
        try:
            return piece_range(num, self.length, self.piece_size)
        except ValueError:
            return None

    def verified_end(self, num: int, sent: int, floor_s: float) -> int:
        """How many of piece `num`'s first bytes may be sent now: waits for more
        than `sent` until relay_deadline (`floor_s` at least after the last block).
        At most `sent` when no more will come in time (the fetch failed, stalled, or
        the content changed)."""
        with self.cond:
            while True:
                if num in self.held and self.length is not None:
                    return piece_range(num, self.length, self.piece_size)[1]
                got = self.arriving.get(num)
                if got is None or got > sent:
                    return sent if got is None else got
                left = relay_deadline(*self._clock[num], floor_s) - self.clock()
                if left <= 0:
                    return got
                self._relay_wait(num, left)

    def _relay_wait(self, num: int, timeout_s: float) -> None:
        """Wait (holding self.cond) until piece `num` changes or `timeout_s` passes."""
        cond = self._relay_conds.get(num)
        if cond is None:
            cond = self._relay_conds[num] = threading.Condition(self._lock)
        self._relays_waiting[num] = self._relays_waiting.get(num, 0) + 1
        try:
            cond.wait(timeout_s)
        finally:
            left = self._relays_waiting.pop(num) - 1
            if left:
                self._relays_waiting[num] = left
            else:
                del self._relay_conds[num]

    def mark_held(self, num: int, sha256_hex: str = "") -> None:
        with self.cond:
            self.arriving.pop(num, None)
            self._clock.pop(num, None)
            self.held.add(num)
            if sha256_hex:
                self.digests[num] = sha256_hex
            self.cond.notify_all()
            self._wake_relays(num)
            prefix = self._prefix
            while self._prefix in self.held:
                self._prefix += 1
            if self._prefix != prefix:
                self.prefix_grown.notify_all()

    def has(self, num: int) -> bool:
        return num in self.held

    def complete(self) -> bool:
        return self.length is not None and len(self.held) >= piece_count(self.length, self.piece_size)

    def piece_slice(self, num: int):
        """(offset, size) of a held piece, or None."""
        if num not in self.held or self.length is None:
            return None
        return piece_range(num, self.length, self.piece_size)

    def held_bytes(self) -> int:
        """How many bytes the held pieces add up to."""
        if self.length is None or not self.piece_size:
            return 0
        return sum(piece_range(n, self.length, self.piece_size)[1] for n in self.held)

    def contiguous_bytes(self) -> int:
        """How many bytes from the start are held without a gap."""
        if not self.piece_size:
            return 0
        n = 0
        while n in self.held:
            n += 1
        end = n * self.piece_size
        return min(end, self.length) if self.length is not None else end

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class FinishedFile:
    """A complete, verified file served whole: every piece is held."""

    def __init__(self, path: str, length: int, piece_size: int, content_version: str = ""):
        self.path = path
        self.length = length
        self.piece_size = piece_size
        self.content_version = content_version
        self.held = set(range(piece_count(length, piece_size)))

    def piece_slice(self, num: int):
        if num not in self.held:
            return None
        return piece_range(num, self.length, self.piece_size)
