"""The daemon's local cache of whole, verified files: registry blobs by digest,
proxied downloads by task. Cleaned by size and by age, least recently used first.

A file enters only complete and verified: the filler (a P2P download) writes a
temporary name beside it and renames. Requests for the same key at once share
one fill, run on its own thread: a request either waits for its outcome
(`obtain`) or follows the file while it grows (`begin`, then a FillReader), so
a burst of pulls costs one download and the first bytes go out while the rest
arrive. Last use is kept in memory and in the file's mtime, so the
order survives a restart. The choice of what to delete is pure
(`choose_cleanup`, built on the supernode's LRU `choose_evictions`).
"""
import logging
import os
import re
import threading
import time
from typing import Callable, Dict, List, Optional, Set, Tuple, Union

from dfly.errors import BadRequest, Cancelled, DflyError, DownloadTimeout, LocalIOError
from dfly.peer.filling import Filling
from dfly.supernode.eviction import CacheEntry, choose_evictions

Fill = Callable[[str, Filling], object]   # fill(path, filling): write the verified file at path

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


class Cache:
    def __init__(self, root: str, limit_bytes: int, max_age_s: float,
                 on_evict: Callable[[str], None] = lambda key: None,
                 clock: Callable[[], float] = time.time,
                 on_stored: Callable[[str], None] = lambda key: None):
        self.root = root
        self.limit_bytes = limit_bytes
        self.max_age_s = max_age_s
        self.on_evict = on_evict
        self.on_stored = on_stored   # a fill put a file in (the scrub looks at it)
        self.clock = clock
        self._lock = threading.Lock()
        self._size: Dict[str, int] = {}
        self._used: Dict[str, float] = {}
        self._stored: Dict[str, float] = {}   # fills seen by this process: for freshness
        self._fills: Dict[str, Filling] = {}
        self._threads: Dict[str, threading.Thread] = {}
        self._closed = False
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

    def obtain(self, key: str, fill: Fill, timeout_s: float, fresh_for_s: float = 0.0) -> str:
        """The path of `key`, calling fill(path, filling) to create it when it is not cached.
        Concurrent callers share one fill and its error; a failed fill is not remembered."""
        entry = self.begin(key, fill, fresh_for_s)
        if isinstance(entry, str):
            return entry
        if not entry.wait(timeout_s):
            raise DownloadTimeout("gave up waiting for the download of %s" % key)
        if entry.error is not None:
            raise entry.error
        return self.lookup(key) or entry.path

    def filling(self, key: str) -> Optional[Filling]:
        """The fill in flight for `key`, if one is."""
        with self._lock:
            return self._fills.get(key)

    def begin(self, key: str, fill: Fill, fresh_for_s: float = 0.0) -> Union[str, Filling]:
        """The path of `key` when cached; else the fill in flight for it, started on a thread
        of its own (fill(path, filling)) unless another request started it already."""
        path = self.lookup(key, fresh_for_s)
        if path is not None:
            return path
        path = self.path_of(key)
        with self._lock:
            if self._closed:
                raise Cancelled("the cache is closing")
            flight = self._fills.get(key)
            if flight is not None:
                return flight
            flight = self._fills[key] = Filling(key, path)
            thread = self._threads[key] = threading.Thread(
                target=self._fill, args=(flight, fill), name="cache-fill-" + key[:24], daemon=True)
        thread.start()
        return flight

    def close(self, timeout_s: float = 10.0) -> None:
        """Cancel the fills in flight and wait (bounded) for their threads."""
        with self._lock:
            self._closed = True
            fills, threads = list(self._fills.values()), list(self._threads.values())
        for flight in fills:
            flight.cancel.set()
        for thread in threads:
            thread.join(timeout_s)

    def _fill(self, flight: Filling, fill: Fill) -> None:
        key = flight.key
        try:
            fill(flight.path, flight)
            size = os.path.getsize(flight.path)
        except BaseException as e:
            error = e if isinstance(e, DflyError) else LocalIOError(str(e))
            with self._lock:
                del self._fills[key]
                self._threads.pop(key, None)
            flight.finish(error)
            if not isinstance(e, DflyError):
                log.exception("cache: filling %s failed", key)
            return
        with self._lock:
            now = self.clock()
            self._size[key], self._used[key], self._stored[key] = size, now, now
            self._busy.add(key)
            del self._fills[key]
            self._threads.pop(key, None)
        flight.finish()
        self.on_stored(key)
        try:
            self.cleanup()
        finally:
            with self._lock:
                self._busy.discard(key)

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

    def set_aside(self, key: str) -> None:
        """No longer hand out `key` (found damaged, a repair fill is starting), and keep
        its file: the fill rewrites pieces of it in place and enters it again."""
        self._forget(key)

    def remove(self, key: str) -> None:
        """Delete a cached file now (found damaged): it is fetched again when next asked for."""
        with self._lock:
            present = key in self._size
            self._drop_locked(key)
        if not present:
            return
        _remove(os.path.join(self.root, key))
        try:
            self.on_evict(key)
        except Exception:
            log.exception("cache: eviction hook failed for %s", key)

    def keys(self) -> List[str]:
        with self._lock:
            return sorted(self._size)

    def entries(self) -> List[Tuple[str, int, float]]:
        """(key, size, last used) of every cached file (for the dashboard)."""
        with self._lock:
            return [(key, size, self._used.get(key, 0.0)) for key, size in self._size.items()]

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
