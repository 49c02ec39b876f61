"""The daemon's local cache of whole, verified files: registry blobs by digest,
proxied downloads by task. Cleaned by size and by age, least recently used first.

A file enters only complete and verified: the filler (a P2P download) writes a
temporary name beside it and renames. Requests for the same key at once share
one fill: the first fills, the rest wait for its outcome, so a burst of pulls
costs one download. Last use is kept in memory and in the file's mtime, so the
order survives a restart. The choice of what to delete is pure
(`choose_cleanup`, built on the supernode's LRU `choose_evictions`).
"""
import logging
import os
import re
import threading
import time
from typing import Callable, Dict, List, Optional, Set

from dfly.errors import BadRequest, DflyError, DownloadTimeout, LocalIOError
from dfly.supernode.eviction import CacheEntry, choose_evictions

log = logging.getLogger("dfly.daemon")

KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,200}$")


def choose_cleanup(entries: List[CacheEntry], limit_bytes: int, max_age_s: float,
                   now: float) -> List[str]:
    """Names to delete: every evictable entry unused for longer than `max_age_s`
    (0 = no age limit), then least recently used ones until the rest fit in `limit_bytes`."""
    expired = [e.name for e in entries
               if e.evictable and max_age_s > 0 and now - e.last_used > max_age_s]
    gone = set(expired)
    return expired + choose_evictions([e for e in entries if e.name not in gone], limit_bytes)


class _Fill:
    def __init__(self):
        self.done = threading.Event()
        self.error: Optional[BaseException] = None


class Cache:
    def __init__(self, root: str, limit_bytes: int, max_age_s: float,
                 on_evict: Callable[[str], None] = lambda key: None,
                 clock: Callable[[], float] = time.time):
        self.root = root
        self.limit_bytes = limit_bytes
        self.max_age_s = max_age_s
        self.on_evict = on_evict
        self.clock = clock
        self._lock = threading.Lock()
        self._size: Dict[str, int] = {}
        self._used: Dict[str, float] = {}
        self._stored: Dict[str, float] = {}   # fills seen by this process: for freshness
        self._fills: Dict[str, _Fill] = {}
        self._busy: Set[str] = set()
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as e:
            raise LocalIOError("cannot create cache folder %s: %s" % (root, e.strerror or e))
        self._scan()

    def path_of(self, key: str) -> str:
        if not KEY.match(key):
            raise BadRequest("bad cache key")
        return os.path.join(self.root, key)

    def lookup(self, key: str, fresh_for_s: float = 0.0) -> Optional[str]:
        """The path of `key` if cached (and, with fresh_for_s, stored that recently); marks it used."""
        path = self.path_of(key)
        with self._lock:
            if key not in self._size:
                return None
            if fresh_for_s > 0 and self.clock() - self._stored.get(key, float("-inf")) > fresh_for_s:
                return None
            self._used[key] = self.clock()
        if not os.path.exists(path):   # deleted behind our back
            self._forget(key)
            return None
        _touch(path)
        return path

    def obtain(self, key: str, fill: Callable[[str], object], timeout_s: float,
               fresh_for_s: float = 0.0) -> str:
        """The path of `key`, calling fill(path) to create it when it is not cached.
        Concurrent callers share one fill and its error; a failed fill is not remembered."""
        path = self.lookup(key, fresh_for_s)
        if path is not None:
            return path
        path = self.path_of(key)
        with self._lock:
            flight = self._fills.get(key)
            mine = flight is None
            if mine:
                flight = self._fills[key] = _Fill()
        if not mine:
            if not flight.done.wait(timeout_s):
                raise DownloadTimeout("gave up waiting for another request's download of %s" % key)
            if flight.error is not None:
                raise flight.error
            return self.lookup(key) or path
        try:
            fill(path)
            size = os.path.getsize(path)
        except BaseException as e:
            flight.error = e if isinstance(e, DflyError) else LocalIOError(str(e))
            raise
        finally:
            with self._lock:
                del self._fills[key]
            flight.done.set()
        with self._lock:
            now = self.clock()
            self._size[key], self._used[key], self._stored[key] = size, now, now
            self._busy.add(key)
        try:
            self.cleanup()
        finally:
            with self._lock:
                self._busy.discard(key)
        return path

    def cleanup(self) -> List[str]:
        """Delete what is over the size limit or too old; returns the keys removed."""
        with self._lock:
            entries = [CacheEntry(k, s, self._used.get(k, 0.0), k not in self._busy)
                       for k, s in self._size.items()]
            victims = choose_cleanup(entries, self.limit_bytes, self.max_age_s, self.clock())
            for key in victims:
                self._drop_locked(key)
        for key in victims:
            _remove(os.path.join(self.root, key))
            log.info("cache: removed %s", key)
            try:
                self.on_evict(key)
            except Exception:
                log.exception("cache: eviction hook failed for %s", key)
        return victims

    def keys(self) -> List[str]:
        with self._lock:
            return sorted(self._size)

    def total_bytes(self) -> int:
        with self._lock:
            return sum(self._size.values())

    def _forget(self, key: str) -> None:
        with self._lock:
            self._drop_locked(key)

    def _drop_locked(self, key: str) -> None:
        self._size.pop(key, None)
        self._used.pop(key, None)
        self._stored.pop(key, None)

    def _scan(self) -> None:
        for entry in os.scandir(self.root):
            if entry.is_file() and KEY.match(entry.name):
                st = entry.stat()
                self._size[entry.name], self._used[entry.name] = st.st_size, st.st_mtime
            elif entry.name.endswith(".dfly-part"):   # a fill cut short by a crash
                _remove(entry.path)


def _touch(path: str) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
