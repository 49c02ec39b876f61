"""A cache fill in flight, and the readers that serve it while it grows.

The filler (a P2P download, pieces in file order) names its PieceFile before
the first piece arrives. A reader follows that file and sends only bytes of
pieces that verified and were marked held, in order, waiting on the file's
condition for the next one. The last piece is held back until the whole file
has verified against its digest and entered the cache, so a wrong file is never
sent whole: when the fill fails after bytes went out, the reader raises and the
response is cut short. When the filler starts again on another file (the
fallback to the source), readers move to it and go on from where they are.

Readers keep their own descriptor: the file they opened stays readable after it
is renamed into the cache, or evicted from it.
"""
import os
import threading
import time
from typing import Optional, Set, Tuple

from dfly.errors import DownloadTimeout, LocalIOError, NotFound
from dfly.protocol.pieces import piece_count

POLL_S = 1.0   # a reader re-checks at least this often (a missed wake-up costs no more)


def servable_end(held: Set[int], length: Optional[int], piece_size: int, pos: int) -> int:
    """How far from `pos` a growing file's bytes may go out: through consecutive held
    pieces, never into the last one (it waits for the check of the whole file). Pure."""
    if length is None or not piece_size:
        return pos
    last = piece_count(length, piece_size) - 1
    num = pos // piece_size
    while num < last and num in held:
        num += 1
    return max(pos, min(num * piece_size, length))


class Filling:
    """One fill in flight: the file being written (once the filler names it), then the outcome."""

    def __init__(self, key: str, path: str):
        self.key = key
        self.path = path          # where the verified file will be
        self.cond = threading.Condition()
        self.cancel = threading.Event()
        self.storage = None       # the PieceFile being written (path, length, piece_size, held, cond)
        self.done = False
        self.error: Optional[BaseException] = None
        self.received: Tuple[int, Optional[int]] = (0, None)   # (bytes so far, of how many)

    def progressed(self, done: int, total: Optional[int], split=None) -> None:
        """The filler's progress callback: how far it got, for a waiter that gives up."""
        self.received = (done, total)

    def publish(self, storage) -> None:
        """The filler writes `storage` now (a first file, or a new one after a failure)."""
        with self.cond:
            old, self.storage = self.storage, storage
            self.cond.notify_all()
        _wake(old)

    def finish(self, error: Optional[BaseException] = None) -> None:
        with self.cond:
            self.done, self.error = True, error
            storage = self.storage
            self.cond.notify_all()
        _wake(storage)

    def wait(self, timeout_s: float) -> bool:
        """Wait for the outcome; False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: self.done, timeout_s)


class FillReader:
    """Reads one Filling in order, only what may be served; close() when done."""

    def __init__(self, filling: Filling, timeout_s: float, clock=time.monotonic):
        self.filling = filling
        self.clock = clock
        self.deadline = clock() + timeout_s
        self._file = None
        self._file_of = None      # the storage self._file was opened for

    def wait_length(self) -> int:
        """The file's length, once the filler knows it."""
        while True:
            storage, done = self._state()
            if done:
                return os.fstat(self._open_final(storage).fileno()).st_size
            if storage is not None and storage.length is not None and storage.piece_size:
                self._open(storage)   # before the rename, so the descriptor follows the file
                return storage.length
            self._wait(storage, until_length=True)

    def wait_past(self, pos: int) -> Tuple[object, int]:
        """(open file, end): bytes pos..end may go out now. end == pos only when the
        fill is done and the file ends there."""
        while True:
            storage, done = self._state()
            if done:
                file = self._open_final(storage)
                return file, os.fstat(file.fileno()).st_size
            if storage is None or storage.length is None:
                self._wait(storage, until_length=True)
                continue
            file = self._open(storage)
            if file is None:   # renamed or removed under us: the outcome is on its way
                self._wait(storage, timeout=POLL_S / 10)
                continue
            with storage.cond:
                if self.filling.done or self.filling.storage is not storage:
                    continue
                end = servable_end(storage.held, storage.length, storage.piece_size, pos)
                if end > pos:
                    return file, end
                storage.cond.wait(self._left(POLL_S))

    def spans(self, first: int, end: int) -> "FillSpans":
        """(file, offset, count) covering first..end-1 in order, each given once it may go
        out; raises the fill's error (so the body is cut short). Closing it closes the reader."""
        return FillSpans(self, first, end)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file, self._file_of = None, None

    # internals ---------------------------------------------------------------------------
    def _state(self):
        filling = self.filling
        with filling.cond:
            if filling.error is not None:
                raise filling.error
            return filling.storage, filling.done

    def _wait(self, storage, until_length: bool = False, timeout: float = POLL_S) -> None:
        """Sleep until the filling moves on from `storage` (or, with until_length, until the
        length is known), bounded by `timeout` and the deadline."""
        cond = storage.cond if storage is not None else self.filling.cond
        filling = self.filling

        def moved() -> bool:
            return (filling.done or filling.storage is not storage
                    or (until_length and storage is not None and storage.length is not None))

        with cond:
            cond.wait_for(moved, self._left(timeout))

    def _left(self, cap: float) -> float:
        left = self.deadline - self.clock()
        if left <= 0:
            raise DownloadTimeout("gave up waiting for the download of %s" % self.filling.key)
        return min(cap, left)

    def _open(self, storage):
        if self._file_of is not storage:
            self.close()
            try:
                self._file = open(storage.path, "rb")
            except FileNotFoundError:
                return None
            except OSError as e:
                raise LocalIOError("cannot read %s: %s" % (storage.path, e.strerror or e))
            self._file_of = storage
        return self._file

    def _open_final(self, storage):
        """The verified file: the one already open if it was this storage's, else the cache's."""
        if self._file is not None and self._file_of is storage:
            return self._file
        self.close()
        try:
            self._file = open(self.filling.path, "rb")
        except OSError as e:
            raise NotFound("the cached file %s is gone: %s" % (self.filling.key, e.strerror or e))
        self._file_of = storage
        return self._file


class FillSpans:
    """FillReader.spans: an iterator that closes its reader when it ends, fails or is closed
    (also when it was never started: a client gone before the body)."""

    def __init__(self, reader: FillReader, first: int, end: int):
        self.reader = reader
        self.pos = first
        self.end = end

    def __iter__(self) -> "FillSpans":
        return self

    def __next__(self) -> Tuple[object, int, int]:
        if self.pos >= self.end:
            self.close()
            raise StopIteration
        try:
            file, ready = self.reader.wait_past(self.pos)
            if ready <= self.pos:
                raise LocalIOError("the file ended at %d of %d bytes" % (self.pos, self.end))
        except BaseException:
            self.close()
            raise
        span = (file, self.pos, min(ready, self.end) - self.pos)
        self.pos += span[2]
        return span

    def close(self) -> None:
        self.reader.close()


def _wake(storage) -> None:
    if storage is not None:
        with storage.cond:
            storage.cond.notify_all()
