"""The supernode's scrub: its cache is checked against the recorded digests in
the background, at a bounded rate, so a piece that rotted on disk is found
before a peer pays for it.

At start-up the tasks whose meta says they were being written when the
process died go first (checked whatever --scrub-rate says, 0 included); then,
unless --scrub-rate is 0, every cached task in the order protocol/scrub.py
chooses, paced at the rate. A task being served (loaded, done) hands a bad
piece to the repairer, which withdraws it and fetches it again at once. A task
not loaded has its damage written into its meta (`damaged`): its pieces are
withdrawn and fetched again, alone, when a peer next asks for the task (its
headers, which the source may need, come with that peer). A copy still being
written resumes from its first bad piece instead.
"""
import json
import logging
import os
import threading
import time
from typing import Callable, Dict, List, Optional, TextIO, Tuple

from dfly.errors import DflyError
from dfly.protocol.pieces import piece_range
from dfly.protocol.scrub import SCRUB_AGAIN_AFTER_S, ScrubCandidate, next_to_scrub
from dfly.protocol.task import TASK_ID
from dfly.scrub import Pace, ScrubStopped, bad_pieces, piece_is_good
from dfly.supernode.cdn import Fetch, store_piece
from dfly.supernode.scheduler import SchedulerConfig
from dfly.supernode.task import DONE, Task, normalise_damaged

log = logging.getLogger("dfly.supernode")

BUSY_WAIT_S = 5.0   # the task is being fetched: look again this much later


class Scrubber:
    """The background scrub of one supernode's cache; one thread."""

    def __init__(self, service, rate_bytes_per_s: float, stop: threading.Event,
                 clock: Callable[[], float] = time.monotonic):
        self.service = service
        self.rate_bytes_per_s = rate_bytes_per_s
        self.stop = stop
        self.clock = clock
        self.checked: Dict[str, float] = {}
        self.busy_until: Dict[str, float] = {}   # being fetched when its turn came
        self.unclean = set(unclean_tasks(service.tasks_dir))   # read before anything changes them
        self._changed = threading.Event()   # a copy was written, or the supernode stops

    def run(self) -> None:
        try:
            fast = Pace(0, self.clock, self.stop)
            for tid in sorted(self.unclean):
                self.scrub(tid, fast)
                self.unclean.discard(tid)
            if self.rate_bytes_per_s <= 0:
                return
            pace = Pace(self.rate_bytes_per_s, self.clock, self.stop)
            while not self.stop.is_set():
                self._changed.clear()   # before looking: a copy written from here on wakes the wait
                now = self.clock()
                tids = _task_ids(self.service.tasks_dir)
                tid = next_to_scrub([ScrubCandidate(t, checked_at=self.checked.get(t))
                                     for t in tids if self.busy_until.get(t, now) <= now], now)
                if tid is None:   # asleep until the next task is due or a copy is written
                    self._forget_gone(tids)
                    self._changed.wait(self._next_due_in(tids, now))
                    continue
                if self.scrub(tid, pace):
                    self.checked[tid] = self.clock()
                    self.busy_until.pop(tid, None)
                else:
                    self.busy_until[tid] = self.clock() + BUSY_WAIT_S
        except ScrubStopped:
            pass

    def _forget_gone(self, tids: List[str]) -> None:
        """Drop the busy marks of tasks no longer cached (evicted): none is due again."""
        present = set(tids)
        self.busy_until = {t: at for t, at in self.busy_until.items() if t in present}

    def _next_due_in(self, tids: List[str], now: float) -> Optional[float]:
        """Seconds until a task is due again (None: none will be until a copy is written)."""
        present = set(tids)
        dues = [self.checked[t] + SCRUB_AGAIN_AFTER_S for t in present if t in self.checked]
        dues.extend(self.busy_until.values())
        return max(0.0, min(dues) - now) if dues else None

    def cache_changed(self) -> None:
        """A task's copy was written (a fetch ended) or the supernode stops: look again now."""
        self._changed.set()

    def just_checked(self, tid: str) -> None:
        """The whole copy was hashed as it was written: not due before the next round."""
        self.checked[tid] = self.clock()

    def scrub(self, tid: str, pace: Pace) -> bool:
        """Check one task's cache; False when it is being fetched (try later)."""
        task = self.service.loaded_task(tid)
        if task is not None:
            return self._scrub_loaded(task, pace)
        folder = os.path.join(self.service.tasks_dir, tid)
        meta, bad = find_damage(folder, pace)
        if not bad:
            return True
        with self.service.loading() as loaded:   # a register now waits, then reads our meta
            task = loaded.get(tid)
            if task is None:
                record_damage(folder, meta, bad)
                self.service.repairer.piece_damaged(len(bad))
                for num in bad:
                    log.warning("task %s piece %d damaged in the supernode's cache (found by the "
                                "scrub): %s", tid[:12], num, "recorded, fetched again when next "
                                "asked for" if meta.get("complete") else "the source is read again "
                                "from there")
                return True
        return self._scrub_loaded(task, pace)

    def _scrub_loaded(self, task: Task, pace: Pace) -> bool:
        with task.cond:
            if task.state != DONE or task.fetching:
                return False
            generation, path = task.generation, task.data_path
            pieces = [(num,) + piece_range(num, task.length, task.piece_size) + (task.digests[num],)
                      for num in sorted(task.scheduler.supernode_pieces) if num < len(task.digests)]
        for num, start, size, sha256_hex in pieces:
            if piece_is_good(path, start, size, sha256_hex, pace):
                continue
            with task.cond:
                if task.generation == generation and task.is_cached(num):
                    self.service.repairer.found_bad(task, num, "found by the scrub")
        return True


def unclean_tasks(tasks_dir: str) -> List[str]:
    """Tasks whose meta says their copy was still being written."""
    out = []
    for tid in _task_ids(tasks_dir):
        meta = _read_meta(os.path.join(tasks_dir, tid))
        if meta is not None and not meta.get("complete") and meta["digests"]:
            out.append(tid)
    return out


def find_damage(folder: str, pace: Pace) -> Tuple[dict, List[int]]:
    """(meta, bad pieces) of a task folder's cache; no meta: nothing to check."""
    meta = _read_meta(folder)
    if meta is None:
        return {}, []
    try:
        bad = bad_pieces(os.path.join(folder, "data"), meta["digests"], int(meta["piece_size"]),
                         meta.get("length"), pace, skip=meta["damaged"])
    except (TypeError, ValueError):
        return meta, []
    return meta, bad


def record_damage(folder: str, meta: dict, bad: List[int]) -> None:
    """Write what was found into the meta: a complete copy lists its damaged pieces,
    one still being written is cut back to before its first bad piece."""
    meta = dict(meta)
    if meta.get("complete"):
        meta["damaged"] = sorted(set(meta["damaged"]) | set(bad))
    else:
        meta["digests"], meta["damaged"] = meta["digests"][:min(bad)], []
    meta.pop("data_size", None)
    path = os.path.join(folder, "meta.json")
    try:
        with open(path + ".tmp", "w") as f:
            json.dump(meta, f)
        os.replace(path + ".tmp", path)
    except OSError as e:
        log.warning("task %s: cannot record its damage: %s", os.path.basename(folder)[:12], e)


def scrub_supernode_tasks(tasks_dir: str, pace: Pace, timeout_s: float, out: TextIO) -> Tuple[int, int]:
    """`dfly scrub` on a (stopped) supernode's tasks: check each; fetch a damaged
    piece of a complete copy again by Range from its URL (without the headers
    peers gave, which are never stored); what cannot be fetched is recorded in
    the meta and fetched when the task is next served. (checked, damaged)."""
    checked = damaged = 0
    for tid in _task_ids(tasks_dir):
        folder = os.path.join(tasks_dir, tid)
        meta, bad = find_damage(folder, pace)
        if not meta:
            continue
        checked += 1
        bad = sorted(set(bad) | set(meta["damaged"]))
        damaged += len(bad)
        if bad and meta.get("complete"):
            left = _refetch(folder, tid, meta, bad, timeout_s, out)
            record_damage(folder, dict(meta, damaged=[]), left)
        elif bad:
            record_damage(folder, meta, bad)
            out.write("task %s: pieces %s damaged; its download resumes from piece %d\n"
                      % (tid[:12], _nums(bad), min(bad)))
    return checked, damaged


def _refetch(folder: str, tid: str, meta: dict, bad: List[int], timeout_s: float,
             out: TextIO) -> List[int]:
    """Fetch `bad` pieces again from the source; the ones still bad."""
    task = Task(tid, meta.get("url", ""), {}, meta.get("digest"), folder, SchedulerConfig())
    task.length, task.piece_size, task.digests = meta.get("length"), meta["piece_size"], meta["digests"]
    fetch = Fetch(task, timeout_s, None)
    left = []
    for num in bad:
        try:
            store_piece(task, num, fetch.read_piece(num))
            out.write("task %s: piece %d damaged, repaired from the source\n" % (tid[:12], num))
        except (DflyError, OSError) as e:
            left.append(num)
            out.write("task %s: piece %d damaged, not repaired (%s); it is fetched again when "
                      "the task is next served\n" % (tid[:12], num, e))
    return left


def _nums(nums: List[int]) -> str:
    return ", ".join(str(n) for n in nums)


def _read_meta(folder: str) -> Optional[dict]:
    try:
        with open(os.path.join(folder, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("digests"), list) \
            or not isinstance(meta.get("piece_size"), int) or meta["piece_size"] <= 0:
        return None
    return normalise_damaged(meta)


def _task_ids(tasks_dir: str) -> List[str]:
    try:
        return sorted(name for name in os.listdir(tasks_dir) if TASK_ID.match(name))
    except OSError:
        return []
