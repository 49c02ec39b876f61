"""The whole-file digest check of a download, hashed while the download runs.

Pieces arrive out of order, but the verified prefix of the file only grows, so
a thread hashes it as it grows (from the page cache, moments after the bytes
were written). When the last piece lands only the bytes not yet hashed are
read: the check no longer adds a full re-read of the file to every download's
critical path. The prefix is made of held pieces only, which no one writes
again; a download that falls back to the source rewrites the file, so that
path checks the whole file afresh (`check_file`).
"""
import threading
from typing import Optional

from dfly import errors
from dfly.peer.storage import PieceFile
from dfly.protocol.digest import mismatch, new_hasher, parse_digest

BLOCK = 1 << 20


def check_file(path: str, digest: str) -> None:
    """Hash the whole file at `path`; DigestMismatch unless it is `digest`."""
    hasher = new_hasher(digest)
    with open(path, "rb", buffering=0) as f:
        _hash_to_end(f, hasher, _buffer())
    _compare(hasher, digest)


class RunningDigest:
    """Hashes `storage`'s verified prefix in a background thread; `finish()`
    hashes the rest and compares."""

    def __init__(self, storage: PieceFile, digest: str):
        self.storage = storage
        self.digest = digest
        self.hasher = new_hasher(digest)
        self.hashed = 0
        self._view = _buffer()   # used by the thread, then by finish() once it has stopped
        self._stop = False
        self._error: Optional[OSError] = None
        self._thread = threading.Thread(target=self._run, name="running-digest", daemon=True)

    def start(self) -> "RunningDigest":
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.storage.cond:
            self._stop = True
            self.storage.prefix_grown.notify_all()
        self._thread.join()

    def finish(self) -> None:
        """After every piece is held: hash what is left, then compare."""
        self.stop()
        if self._error is not None:
            raise errors.LocalIOError("cannot read %s back: %s" % (getattr(self.storage, "shown", None)
                                                                   or self.storage.path, self._error))
        with open(self.storage.path, "rb", buffering=0) as f:
            f.seek(self.hashed)
            self.hashed += _hash_to_end(f, self.hasher, self._view)
        _compare(self.hasher, self.digest)

    def _run(self) -> None:
        storage = self.storage
        try:
            with open(storage.path, "rb", buffering=0) as f:
                while True:
                    with storage.cond:
                        storage.prefix_grown.wait_for(
                            lambda: self._stop or storage.contiguous_bytes() > self.hashed)
                        if self._stop:
                            return
                        ready = storage.contiguous_bytes()
                    f.seek(self.hashed)
                    self.hashed += _hash_to_end(f, self.hasher, self._view, ready - self.hashed)
        except OSError as e:
            self._error = e


def _buffer() -> memoryview:
    """One read buffer per digest, reused: a fresh 1 MiB object per read would be
    mapped, faulted in and zeroed again each time."""
    return memoryview(bytearray(BLOCK))


def _hash_to_end(f, hasher, view: memoryview, limit: Optional[int] = None) -> int:
    """Feed `hasher` from the file's position to its end, or at most `limit` bytes,
    reading into `view`; the bytes read."""
    count = 0
    while limit is None or count < limit:
        want = BLOCK if limit is None else min(BLOCK, limit - count)
        n = f.readinto(view[:want])
        if not n:
            break
        hasher.update(view[:n])
        count += n
    return count


def _compare(hasher, digest: str) -> None:
    if hasher.hexdigest() != parse_digest(digest)[1]:
        raise errors.DigestMismatch(mismatch(digest, "%s:%s" % (hasher.name, hasher.hexdigest())))
