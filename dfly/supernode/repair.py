"""Repair of the supernode's cache: a piece that may be bad is checked on disk,
and a bad one is fetched again, alone, and offered again.

Suspicion comes from peers (a `failed` report against the supernode whose
reason says the bytes did not match or came short: messages.copy_suspect) and
from our own checks (the scrub, a damaged list in a task's meta). A suspect
piece is withdrawn at once, so no peer is sent for it while it is re-read and
checked against its digest on the repair thread. Good, it is offered again
(the fault was on the way, not on our disk), with its block digests cut again
from it: a peer takes a piece whose blocks verify without hashing it whole, so
block digests of other bytes (a damaged `blocks` file, a replica's) make every
peer refuse a good copy at a block; this is where they are caught and mended. Bad or unreadable, it is logged
once, counted, and fetched again: from a peer that holds it verified, else
from the source by Range (cdn.Fetch.read_piece); checked, written, offered
again. When neither has it (the source's bytes changed, or it cannot be
reached, and no peer holds it), the task fails with that reason at once: no
peer waits for the piece, and nothing bad is ever served.
"""
import hashlib
import http.client
import logging
import queue
import threading
from typing import Callable, Optional, Tuple

from dfly.errors import DflyError, DigestMismatch, LocalIOError, SourceError
from dfly.protocol import piecetoken
from dfly.protocol.messages import SUPERNODE
from dfly.protocol.pieces import block_digests, block_size_for
from dfly.supernode.cdn import Fetch, blocks_cut_again, piece_bounds, store_piece
from dfly.supernode.task import FAILED, Task
from dfly.tls import TLS, http_connection

log = logging.getLogger("dfly.supernode")

PEER_TIMEOUT_S = 5.0
PEERS_TRIED = 2
RECHECK_AFTER_S = 30.0   # a piece found good is not read again for reports sooner (a flood of
                         # false reports must not make us read the cache over and over)


class Repairer:
    """One thread that checks suspect pieces and fetches bad ones again."""

    def __init__(self, fetch_for: Callable[[Task], Fetch], clock: Callable[[], float],
                 tls: Optional[TLS] = None, token_for: Callable[[str, str], str] = lambda t, h: "",
                 piece_damaged: Callable[[int], None] = lambda count: None,
                 piece_repaired: Callable[[int], None] = lambda count: None):
        self.fetch_for = fetch_for   # a Fetch to read single pieces from a task's source
        self.piece_damaged = piece_damaged     # counted (metrics): pieces found bad in the cache
        self.piece_repaired = piece_repaired   # ... and pieces fetched again and offered again
        self.token_for = token_for   # (task id, holder) -> a piece token for us at that holder
        self.clock = clock
        self.tls = tls   # peers are dialled with TLS
        self._queue: queue.Queue[Optional[tuple]] = queue.Queue()
        self._queued = set()   # (task id, generation, piece): at most one job each
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="supernode-repair", daemon=True)

    def start(self) -> "Repairer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(10)

    # what the service calls; the caller holds task.cond ---------------------------------
    def suspect(self, task: Task, num: int, why: str) -> None:
        """A peer says our copy of `num` came bad: withdraw it at once and check it."""
        if not task.is_cached(num):
            return   # being checked or repaired already, or not here
        if self.clock() - task.good_at.get(num, float("-inf")) < RECHECK_AFTER_S:
            return   # found good a moment ago: the fault is on the way, not on our disk
        task.piece_withdrawn(num)
        self._put(task, num, why, check=True)

    def found_bad(self, task: Task, num: int, why: str) -> None:
        """Our own check found `num` bad: withdraw it and fetch it again."""
        if num in task.damaged or num >= len(task.digests):
            return
        self._damaged(task, num, why)
        self._put(task, num, why, check=False)

    def repair_damaged(self, task: Task) -> None:
        """Fetch again the pieces a task's meta says are damaged (found while idle)."""
        for num in sorted(task.damaged):
            self._put(task, num, "found damaged earlier", check=False)

    # the thread -----------------------------------------------------------------------------
    def _put(self, task: Task, num: int, why: str, check: bool) -> None:
        key = (task.task_id, task.generation, num)
        with self._lock:
            if key in self._queued:
                return
            self._queued.add(key)
        start, size = piece_bounds(task, num)
        self._queue.put((task, task.generation, num, task.digests[num], start, size, why, check))

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            task, generation, num = job[0], job[1], job[2]
            try:
                self._handle(*job)
            except Exception as e:   # a bug must not end the repairs of every other task,
                log.exception("task %s piece %d: repair failed", task.task_id[:12], num)
                with task.cond:   # nor leave peers waiting for a piece nobody offers
                    if task.generation == generation and (num in task.checking or num in task.damaged):
                        self._give_up(task, num, e)
            finally:
                with self._lock:
                    self._queued.discard((task.task_id, generation, num))

    def _handle(self, task: Task, generation: int, num: int, sha256_hex: str, start: int,
                size: int, why: str, check: bool) -> None:
        if check:
            data = _read_cached(task.data_path, start, size)
            good = data is not None and hashlib.sha256(data).hexdigest() == sha256_hex
            blocks = block_digests(data, block_size_for(task.piece_size)) if good else []
            with task.cond:
                if task.generation != generation or num not in task.checking:
                    return
                if good:   # the fault was on the way, not on our disk, or in its block digests
                    if blocks_cut_again(task, num, blocks):
                        log.warning("task %s piece %d: its block digests were not of its bytes "
                                    "(%s): cut again from it", task.task_id[:12], num, why)
                    task.good_at[num] = self.clock()
                    task.piece_cached(num)
                    log.debug("task %s piece %d checked good (%s)", task.task_id[:12], num, why)
                    return
                self._damaged(task, num, why)
        self._refetch(task, generation, num, sha256_hex, size)

    def _damaged(self, task: Task, num: int, why: str) -> None:
        task.piece_damaged(num)
        self.piece_damaged(1)
        _save_meta(task)
        log.warning("task %s piece %d damaged in the supernode's cache (%s): withdrawn, "
                    "fetching it again", task.task_id[:12], num, why)

    def _refetch(self, task: Task, generation: int, num: int, sha256_hex: str, size: int) -> None:
        with task.cond:
            holders = [(task.scheduler.addr_of(h), self.token_for(task.task_id, h))
                       for h in sorted(task.scheduler.holders_of(num))]
        reachable = [h for h in holders if h[0]][:PEERS_TRIED]
        data, origin, error = _from_peers(task.task_id, num, size, sha256_hex, reachable,
                                          self.tls), "a peer", None
        if data is None:
            origin = "the source by Range"
            try:
                data = self.fetch_for(task).read_piece(num)
            except DflyError as e:
                error = e
        with task.cond:
            if task.generation != generation or num not in task.damaged or task.state == FAILED:
                return
            if data is not None:
                try:
                    store_piece(task, num, data)
                except OSError as e:
                    data, error = None, LocalIOError("cannot write it: %s" % e)
            if data is not None:
                task.piece_cached(num)
                task.repaired_pieces += 1
                self.piece_repaired(1)
                _save_meta(task)
                log.info("task %s piece %d repaired from %s", task.task_id[:12], num, origin)
                return
            self._give_up(task, num, error)

    def _give_up(self, task: Task, num: int, error) -> None:
        """Piece `num` cannot be had again: peers serve it, or the task fails at once."""
        if task.scheduler.holders_of(num):
            log.warning("task %s piece %d cannot be fetched again (%s); peers serve it",
                        task.task_id[:12], num, error)
            return
        kind = type(error).__name__ if isinstance(error, (SourceError, DigestMismatch,
                                                          LocalIOError)) else "SourceError"
        task.fail(kind, "piece %d is damaged in the supernode's cache and no good copy "
                  "is left: %s" % (num, error), self.clock())
        log.error("task %s failed: piece %d is damaged and %s", task.task_id[:12], num, error)


def _from_peers(task_id: str, num: int, size: int, sha256_hex: str,
                addrs, tls: Optional[TLS] = None) -> Optional[bytes]:
    """Piece `num` from the first of `addrs` ((address, piece token) of peer uploaders)
    that sends it intact."""
    for addr, token in addrs:
        data = _get_piece(addr, task_id, num, size, tls, token)
        if data is not None and hashlib.sha256(data).hexdigest() == sha256_hex:
            return data
    return None


def _get_piece(addr: Tuple[str, int], task_id: str, num: int, size: int,
               tls: Optional[TLS] = None, token: str = "") -> Optional[bytes]:
    conn = http_connection(tls, addr[0], addr[1], PEER_TIMEOUT_S)
    try:
        conn.request("GET", "/v1/tasks/%s/pieces/%d?peer=%s" % (task_id, num, SUPERNODE),
                     headers={piecetoken.HEADER: token} if token else {})
        response = conn.getresponse()
        if response.status != 200 or response.length != size:
            return None
        data = response.read(size)
        return data if len(data) == size else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _read_cached(path: str, start: int, size: int) -> Optional[bytes]:
    """The `size` bytes at `start` of a cache file; None if they cannot all be read."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(size)
    except OSError:
        return None
    return data if len(data) == size else None


def _save_meta(task: Task) -> None:
    try:
        task.save_meta()
    except OSError as e:   # the disk that lost the piece may refuse this too: keep serving
        log.warning("task %s meta not saved: %s", task.task_id[:12], e)
