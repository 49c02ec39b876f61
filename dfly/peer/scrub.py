"""The daemon's scrub: its cache checked against digests in the background.

A cached file is checked piece by piece against the digests its seed record
keeps (seeds.py); a registry blob without them, whole, against the digest its
key names; a file with neither cannot be checked and is skipped. The order is
protocol/scrub.py's, the pace --scrub-rate. A damaged file goes to the daemon
(`RunningDaemon.cache_damaged`), which stops serving it at once and fetches it
again through P2P. Fills write to a temporary name and rename only when
verified, so no cached file was ever left half-written by a crash: there is
nothing to check first at start-up.
"""
import hashlib
import logging
import os
import re
import threading
import time
from typing import Callable, Dict, List, Optional, TextIO, Tuple

from dfly.peer.seeds import Seed, SeedBook
from dfly.protocol.scrub import SCRUB_AGAIN_AFTER_S, SCRUB_STEP_BYTES, ScrubCandidate, next_to_scrub
from dfly.scrub import Pace, ScrubStopped, bad_pieces

log = logging.getLogger("dfly.daemon")

BLOB_KEY = re.compile(r"^sha256-([0-9a-f]{64})$")


def find_damage(path: str, key: str, seed: Optional[Seed], pace: Pace) -> Tuple[List[int], str]:
    """(bad pieces, what is wrong) of the cached file `key`: ([], "") when it is
    good or cannot be checked; [-1] when it is bad as a whole (no piece digests)."""
    try:
        length = os.path.getsize(path)
    except OSError as e:
        return [-1], "unreadable: %s" % (e.strerror or e)
    if seed is not None and seed.digests:
        bad = bad_pieces(path, seed.digests, seed.piece_size, length, pace)
        return bad, ("pieces not matching their digests: %s" % ", ".join(map(str, bad))) if bad else ""
    blob = BLOB_KEY.match(key)
    if blob is not None and _sha256_of(path, pace) != blob.group(1):
        return [-1], "the file does not match its digest"
    return [], ""


def _sha256_of(path: str, pace: Pace) -> Optional[str]:
    hasher = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(SCRUB_STEP_BYTES), b""):
                pace.take(len(block))
                hasher.update(block)
    except OSError:
        return None
    return hasher.hexdigest()


class CacheScrubber:
    """The background scrub of the daemon's cache; one thread."""

    def __init__(self, daemon, rate_bytes_per_s: float, stop: threading.Event,
                 clock: Callable[[], float] = time.monotonic):
        self.daemon = daemon
        self.rate_bytes_per_s = rate_bytes_per_s
        self.stop = stop
        self.clock = clock
        self.checked: Dict[str, float] = {}
        self._changed = threading.Event()   # a file entered the cache, or the daemon stops

    def run(self) -> None:
        if self.rate_bytes_per_s <= 0:
            return
        pace = Pace(self.rate_bytes_per_s, self.clock, self.stop)
        try:
            while not self.stop.is_set():
                self._changed.clear()   # before looking: a file stored from here on wakes the wait
                now, keys = self.clock(), self.daemon.cache.keys()
                key = next_to_scrub([ScrubCandidate(k, checked_at=self.checked.get(k)) for k in keys], now)
                if key is None:   # asleep until the next file is due or one is stored
                    self._changed.wait(self._next_due_in(keys, now))
                    continue
                self.scrub(key, pace)
                self.checked[key] = self.clock()
        except ScrubStopped:
            pass

    def _next_due_in(self, keys: List[str], now: float) -> Optional[float]:
        """Seconds until a file is due again (None: none will be until one is stored)."""
        dues = [self.checked[k] + SCRUB_AGAIN_AFTER_S for k in keys if k in self.checked]
        return max(0.0, min(dues) - now) if dues else None

    def cache_changed(self) -> None:
        """A file entered the cache or the daemon stops: look again now."""
        self._changed.set()

    def scrub(self, key: str, pace: Pace) -> List[int]:
        """Check one cached file; the bad pieces found (handed to the daemon)."""
        bad, what = find_damage(self.daemon.cache.path_of(key), key, self.daemon.seeds.get(key), pace)
        if bad:
            self.daemon.cache_damaged(key, bad, "%s (found by the scrub)" % what)
        return bad


def scrub_daemon_cache(daemon_dir: str, pace: Pace, out: TextIO) -> Tuple[int, int]:
    """`dfly scrub` on a (stopped) daemon's cache: a damaged file is removed with
    its seed record, and fetched again through P2P when next asked for.
    (files checked, bad pieces)."""
    cache_dir = os.path.join(daemon_dir, "cache")
    seeds = SeedBook(os.path.join(daemon_dir, "seeds"))
    checked = damaged = 0
    for key in sorted(os.listdir(cache_dir)):
        path = os.path.join(cache_dir, key)
        if not os.path.isfile(path) or key.endswith(".dfly-part"):
            continue
        checked += 1
        bad, what = find_damage(path, key, seeds.get(key), pace)
        if not bad:
            continue
        damaged += len(bad)
        try:
            os.remove(path)
        except OSError as e:
            out.write("daemon cache %s: %s; cannot remove it: %s\n" % (key, what, e))
            continue
        seeds.remove(key)
        out.write("daemon cache %s: %s; removed, fetched again when next asked for\n" % (key, what))
    return checked, damaged
