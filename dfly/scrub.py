"""Checking cached pieces against their digests, and `dfly scrub`.

`piece_is_good` and `bad_pieces` read a cached file piece by piece (paced by a
`Pace`, so a scrub takes a bounded share of the disk) and compare each piece
with the sha256 recorded when it was cut; an unreadable piece is a bad piece.
The supernode's scrubber (supernode/scrub.py), its repairer, and the daemon's
(peer/scrub.py) use them while running; `run` is `dfly scrub --data-dir DIR`:
one pass over the supernode and daemon caches found in DIR, repairing what it
can, exit SCRUB_FOUND_DAMAGE when anything was damaged. It holds their data dir
locks (datadir.py) while it runs: never beside a live supernode or daemon,
whose own writes and repairs it would race.
"""
import hashlib
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, TextIO

from dfly.errors import BadRequest, DataDirInUse
from dfly.options import option
from dfly.protocol.ratelimit import TokenBucket
from dfly.protocol.scrub import SCRUB_STEP_BYTES

SCRUB_FOUND_DAMAGE = 8   # exit code: damage found (and repaired where possible)


@dataclass(frozen=True)
class ScrubConfig:
    data_dir: str = option("", "the supernode's or daemon's data dir (default: per-user data dir)",
                           metavar="DIR")
    scrub_rate: int = option(0, "bytes per second read, 0 = as fast as the disk goes",
                             kind="size", metavar="RATE")
    source_timeout_s: float = option(30.0, "timeout for fetching a damaged piece again from its "
                                     "source", kind="duration", flag="--source-timeout",
                                     metavar="DURATION")


class ScrubStopped(Exception):
    """The process is stopping: the scrub ends where it is."""


class Pace:
    """Reads paced at `rate_bytes_per_s` (0: as fast as the disk goes)."""

    def __init__(self, rate_bytes_per_s: float, clock: Callable[[], float] = time.monotonic,
                 stop: Optional[threading.Event] = None):
        self.clock = clock
        self.stop = stop or threading.Event()
        self.bucket = TokenBucket(rate_bytes_per_s, clock()) if rate_bytes_per_s > 0 else None

    def take(self, nbytes: int) -> None:
        if self.bucket is not None:
            delay = self.bucket.reserve(nbytes, self.clock())
            if delay > 0:
                self.stop.wait(delay)
        if self.stop.is_set():
            raise ScrubStopped()


def piece_is_good(path: str, start: int, size: int, sha256_hex: str,
                  pace: Optional[Pace] = None) -> bool:
    """Do the `size` bytes at `start` of `path` have this sha256? Unreadable: no."""
    hasher, got = hashlib.sha256(), 0
    try:
        with open(path, "rb") as f:
            f.seek(start)
            while got < size:
                block = f.read(min(SCRUB_STEP_BYTES, size - got))
                if not block:
                    return False
                if pace is not None:
                    pace.take(len(block))
                hasher.update(block)
                got += len(block)
    except OSError:
        return False
    return hasher.hexdigest() == sha256_hex


def bad_pieces(path: str, digests: Sequence[str], piece_size: int, length: Optional[int],
               pace: Optional[Pace] = None, skip: Sequence[int] = ()) -> List[int]:
    """The pieces of `path` (cut at `piece_size`) that do not match `digests`."""
    bad = []
    for num, sha256_hex in enumerate(digests):
        if num in skip:
            continue
        start = num * piece_size
        size = piece_size if length is None else max(0, min(piece_size, length - start))
        if not piece_is_good(path, start, size, sha256_hex, pace):
            bad.append(num)
    return bad


def run(data_dir: str, rate_bytes_per_s: float, source_timeout_s: float, out: TextIO) -> int:
    """`dfly scrub`: one pass over the caches in `data_dir`; the exit code."""
    from dfly.peer.scrub import scrub_daemon_cache
    from dfly.supernode.scrub import scrub_supernode_tasks

    pace = Pace(rate_bytes_per_s)
    task_dirs = [d for d in (os.path.join(data_dir, "tasks"), os.path.join(data_dir, "supernode", "tasks"))
                 if os.path.isdir(d)]
    daemon_dir = os.path.join(data_dir, "daemon")
    daemon_cache = os.path.isdir(os.path.join(daemon_dir, "cache"))
    if not task_dirs and not daemon_cache:
        raise BadRequest("no supernode or daemon cache in %s (a supernode's data dir holds tasks/, "
                         "a daemon's daemon/cache/)" % data_dir)
    locks = hold_data_dirs(data_dir, task_dirs, daemon_cache)   # a live one there: exit 2
    checked = damaged = 0
    try:
        for tasks_dir in task_dirs:
            counts = scrub_supernode_tasks(tasks_dir, pace, source_timeout_s, out)
            checked, damaged = checked + counts[0], damaged + counts[1]
        if daemon_cache:
            counts = scrub_daemon_cache(daemon_dir, pace, out)
            checked, damaged = checked + counts[0], damaged + counts[1]
    finally:
        for lock in locks:
            lock.release()
    out.write("dfly scrub: %d file(s) checked, %d damaged piece(s) found\n" % (checked, damaged))
    return SCRUB_FOUND_DAMAGE if damaged else 0


def hold_data_dirs(data_dir: str, task_dirs: Sequence[str], daemon_cache: bool) -> list:
    """The locks (datadir.py) of the supernodes and the daemon whose caches are in
    `data_dir`, held for the scrub: one running there is DataDirInUse (exit 2), nothing
    read; one started while the scrub runs is refused."""
    from dfly import datadir

    places = [(os.path.dirname(d), "supernode") for d in task_dirs]
    places += [(data_dir, "daemon")] if daemon_cache else []
    locks: list = []
    try:
        for place, kind in places:
            locks.append(datadir.hold(place, kind, "dfly scrub"))
    except DataDirInUse as e:
        for lock in locks:
            lock.release()
        raise DataDirInUse("%s: stop it first (a running supernode or daemon scrubs its own "
                           "cache, --scrub-rate)" % e)
    return locks
