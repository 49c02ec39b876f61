"""One P2P download: the coordinator loop and its piece workers.

The coordinator is the only thread that talks to the supernode. Each round it
reports the pieces finished or failed since the last round and asks for as many
new pieces as it has free workers (long-polling when it has nothing in flight);
workers fetch pieces from the holders named and hand results back on a queue.
A verified piece is marked held at once, so the uploader serves it onward
while the rest is still arriving. A holder that fails or lies is reported, and
the supernode re-plans that piece from someone else.
"""
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from dfly import errors
from dfly.peer.piece_client import PieceFailed, PieceFetcher
from dfly.peer.storage import PieceFile
from dfly.protocol.messages import Failure, PieceOrder, RegisterRequest, ScheduleRequest, TaskState
from dfly.protocol.ratelimit import TokenBucket
from dfly.supernode.client import SupernodeClient, SupernodeDown
from dfly.supernode.scheduler import SUPERNODE

IDLE_WAIT_S = 2.0       # long-poll when nothing is in flight
RESULT_WAIT_S = 0.5     # with pieces in flight, ask again at least this often
MAX_PIECE_FAILURES = 5  # then this swarm cannot deliver: another supernode, or the source


class SwarmStuck(SupernodeDown):
    """This supernode's swarm keeps failing to deliver a piece."""


@dataclass
class ByteSplit:
    """Where a download's bytes came from: the answer to "is it really P2P?"."""
    source: int = 0
    supernode: int = 0
    peers: int = 0
    by_peer: Dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.source + self.supernode + self.peers


@dataclass
class _Result:
    order: PieceOrder
    error: Optional[str] = None
    fatal: Optional[BaseException] = None


_ERROR_KINDS = {"SourceError": errors.SourceError, "DigestMismatch": errors.DigestMismatch}


class P2PDownload:
    """Fetch one task's pieces into `storage` via one supernode."""

    def __init__(self, supernode: SupernodeClient, register: RegisterRequest, storage: PieceFile,
                 parallel: int, piece_timeout_s: float, deadline: Optional[float],
                 bucket: Optional[TokenBucket] = None, sequential: bool = False,
                 on_progress: Callable[[ByteSplit], None] = lambda split: None,
                 on_registered: Callable[[str], None] = lambda task_id: None,
                 clock: Callable[[], float] = time.monotonic, split: Optional[ByteSplit] = None,
                 cancel: Optional[threading.Event] = None):
        self.supernode = supernode
        self.register_request = register
        self.storage = storage
        self.parallel = max(1, parallel)
        self.piece_timeout_s = piece_timeout_s
        self.deadline = deadline
        self.bucket = bucket
        self.sequential = sequential
        self.on_progress = on_progress
        self.on_registered = on_registered
        self.clock = clock
        self.split = split if split is not None else ByteSplit()   # shared across failovers
        self.cancel = cancel or threading.Event()
        self.task_id = ""
        self._jobs: queue.Queue[Optional[PieceOrder]] = queue.Queue()
        self._results: queue.Queue[_Result] = queue.Queue()
        self._inflight: Dict[int, PieceOrder] = {}
        self._done: List[int] = []
        self._failed: List[Failure] = []
        self._workers: List[threading.Thread] = []
        self._piece_failures: Dict[int, int] = {}

    @property
    def peer_id(self) -> str:
        return self.register_request.peer_id

    def run(self) -> str:
        """Download every piece; returns the task id. Raises typed errors."""
        self._start_workers()
        try:
            state = self._register()
            while not self._finished(state):
                self._check_deadline()
                state = self._round()
            self._report_final()
            return self.task_id
        finally:
            self._stop_workers()

    # rounds -------------------------------------------------------------------------
    def _register(self) -> TaskState:
        self.task_id, state = self.supernode.register(self.register_request)
        self.on_registered(self.task_id)
        self._done = sorted(self.storage.held)   # re-announce what we hold after a re-register
        self._apply(state)
        return state

    def _round(self) -> TaskState:
        want = self.parallel - len(self._inflight)
        request = ScheduleRequest(self.peer_id, self._done, self._failed, want, self.sequential,
                                  0.0 if self._inflight else self._wait_s())
        try:
            state = self.supernode.schedule(self.task_id, request)
        except errors.Gone:
            return self._register()
        self._done, self._failed = [], []
        self._apply(state)
        for order in state.pieces:
            if self.storage.has(order.num):
                # Offered a piece we hold: a supernode that took the task over did not
                # know it yet when we re-announced. Say so again, or the assignment
                # stays open and others wait for it.
                self._done.append(order.num)
            elif order.num not in self._inflight:
                self._inflight[order.num] = order
                self._jobs.put(order)
        if self._inflight:
            self._collect()
        return state

    def _wait_s(self) -> float:
        if self.deadline is None:
            return IDLE_WAIT_S
        return max(0.0, min(IDLE_WAIT_S, self.deadline - self.clock()))

    def _apply(self, state: TaskState) -> None:
        if state.state == "failed":
            kind = _ERROR_KINDS.get(state.error_kind, errors.DflyError)
            raise kind(state.error or "the supernode gave up on this task")
        if state.piece_size is not None:   # None until the supernode has decided it
            self.storage.set_geometry(state.length, state.piece_size)

    def _finished(self, state: TaskState) -> bool:
        return (state.piece_count is not None and state.length is not None
                and len(self.storage.held) >= state.piece_count and not self._inflight)

    def _collect(self) -> None:
        """Wait for at least one result (bounded), then take all that are ready."""
        try:
            results = [self._results.get(timeout=RESULT_WAIT_S)]
        except queue.Empty:
            return
        while True:
            try:
                results.append(self._results.get_nowait())
            except queue.Empty:
                break
        for result in results:
            self._settle(result)

    def _settle(self, result: _Result) -> None:
        order = result.order
        self._inflight.pop(order.num, None)
        if result.fatal is not None:
            raise result.fatal
        if result.error is not None:
            self._failed.append(Failure(order.num, order.holder, result.error))
            failures = self._piece_failures[order.num] = self._piece_failures.get(order.num, 0) + 1
            if failures >= MAX_PIECE_FAILURES:
                raise SwarmStuck("piece %d failed %d times (last from %s: %s)"
                                 % (order.num, failures, order.holder, result.error))
            return
        self.storage.mark_held(order.num)
        self._done.append(order.num)
        if order.holder == SUPERNODE:
            self.split.supernode += order.size
        else:
            self.split.peers += order.size
            self.split.by_peer[order.holder] = self.split.by_peer.get(order.holder, 0) + order.size
        self.on_progress(self.split)

    def _report_final(self) -> None:
        """Tell the supernode about the last pieces, so others can fetch them from us."""
        if self._done or self._failed:
            self.supernode.schedule(self.task_id, ScheduleRequest(self.peer_id, self._done,
                                                                  self._failed, want=0))
            self._done, self._failed = [], []

    def _check_deadline(self) -> None:
        if self.cancel.is_set():
            raise errors.Cancelled("download cancelled")
        if self.deadline is not None and self.clock() > self.deadline:
            raise errors.DownloadTimeout("download timed out with %d pieces held"
                                         % len(self.storage.held))

    # workers ------------------------------------------------------------------------
    def _start_workers(self) -> None:
        for i in range(self.parallel):
            t = threading.Thread(target=self._work, name="piece-worker-%d" % i, daemon=True)
            t.start()
            self._workers.append(t)

    def _stop_workers(self) -> None:
        for _ in self._workers:
            self._jobs.put(None)
        for t in self._workers:
            t.join(self.piece_timeout_s + 5)

    def _work(self) -> None:
        fetcher = PieceFetcher(self.piece_timeout_s, self.bucket, self.clock)
        try:
            while True:
                order = self._jobs.get()
                if order is None:
                    return
                addr = order.addr or self.supernode.address
                try:
                    fetcher.fetch(addr, self.task_id, order, self.storage.write)
                    self._results.put(_Result(order))
                except PieceFailed as e:
                    self._results.put(_Result(order, error=str(e)))
                except errors.LocalIOError as e:
                    self._results.put(_Result(order, fatal=e))
        finally:
            fetcher.close()
