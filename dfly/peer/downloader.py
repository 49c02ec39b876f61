"""One P2P download: the coordinator, its reporter and its piece workers.

Three kinds of threads, each with one job, so no piece waits on another's:
- the coordinator asks the supernode for as many pieces as there are free
  workers and long-polls, so it hears of a piece the moment one becomes
  assignable (a peer finished it, the supernode cut it);
- piece workers fetch pieces from the holders named, verify them and mark them
  held at once, so the uploader serves them onward while the rest arrives;
- a finished or failed piece is reported at once: a worker that settles frees
  a slot, so the coordinator's next request carries the report while asking
  for the next piece; if the coordinator is held in a long-poll, the reporter
  sends it on its own connection, so others can fetch from us without waiting
  for that poll to return.
A holder that fails or lies is reported, and the supernode re-plans that piece
from someone else.

A piece fetched from a relay (the order says `relay`: its holder is still
fetching it, from the supernode) holds none of the `parallel` slots: it goes
at its relay's source's pace, not at what our link could take: while a swarm
ramps, the supernode sends one piece to each of up to 16 peers at once, each
passes its piece on to all the others, and each peer takes a stream from each
(scheduler.py, "the fan-out"). Up to `parallel` + RELAY_FETCHES fetches run
then.

A piece counts as arriving from the moment it is handed to a worker: the
supernode may name us as its holder to others at once (cut-through), and the
uploader serves its blocks as each verifies (storage.py), until it is held or
its fetch failed.

Every reply names the task's content version, and reports name the version of
the pieces they report. When the version changes while we hold pieces of
another (the source changed under a supernode that restarted or took the task
over), the held pieces are dropped and the download starts over on the new
content, once; a second change, or a change while a reader follows the file,
ends it with SourceChanged. A file is never made of two versions.
"""
import functools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional

from dfly import errors
from dfly.httpd import Paces
from dfly.peer.piece_client import PieceFailed, PieceFetcher
from dfly.peer.progress import human_bytes, received
from dfly.peer.source import Fill
from dfly.peer.storage import PieceFile
from dfly.peer.trace import NO_TRACE
from dfly.protocol import messages
from dfly.protocol.messages import SUPERNODE, Failure, PieceOrder, RegisterRequest, ScheduleRequest, TaskState
from dfly.protocol.ratelimit import TokenBucket
from dfly.supernode.client import SupernodeClient, SupernodeDown, SupernodeSlow

POLL_WAIT_S = 2.0       # longest long-poll: bounds how late a cancel or deadline is seen
KEEPALIVE_S = 2.0       # with every worker busy, still call this often (the supernode forgets
                        # peers silent for --peer-ttl, 30 s by default)
MAX_PIECE_FAILURES = 5  # then this swarm cannot deliver: another supernode, or the source
MAX_RESTARTS = 1        # starts over on new content; the next change ends the download
RELAY_FETCHES = 16      # fetches from relays beside `parallel`: one per stream of the supernode's fan-out
ANSWER_PATIENCE_S = 60.0   # longest a supernode may leave calls unanswered while pieces still arrive

log = logging.getLogger("dfly.client")


def ask_again(now: float, last_answer: float, arrived: bool,
              patience_s: float = ANSWER_PATIENCE_S) -> bool:
    """Whether a schedule call that timed out is made again to the same supernode: when
    piece bytes `arrived` while it was out (this host's links are busy, so the reply
    may sit in a queue behind the swarm's pieces, or TCP be backing off after a loss)
    and the supernode answered less than `patience_s` ago (a hung one is given up
    then). Giving a live supernode up sends the host, and every host behind the same
    full link, to the source for all they miss."""
    return arrived and now - last_answer < patience_s


class SwarmStuck(SupernodeDown):
    """This supernode's swarm keeps failing to deliver a piece."""


class _ContentChanged(Exception):
    """A reply names a content version other than the one of the pieces we hold."""

    def __init__(self, content_version: str):
        super().__init__(content_version)
        self.content_version = content_version


class SupernodeFailed(SupernodeDown):
    """The supernode failed the task through no fault of the source (its disk is
    full, a bug): another supernode, or the source, may still serve it."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind   # the supernode's error kind: LocalIOError or InternalError


@dataclass
class ByteSplit:
    """Where a download's bytes came from: the answer to "is it really P2P?"."""
    source: int = 0
    supernode: int = 0
    peers: int = 0
    by_peer: Dict[str, int] = field(default_factory=dict)
    discarded: int = 0   # received but not kept: failed checks, or replaced by the source's copy

    @property
    def total(self) -> int:
        """Bytes in the file: source + supernode + peers is its size once done."""
        return self.source + self.supernode + self.peers

    def replaced(self) -> None:
        """The whole file is to be fetched again: nothing received so far is kept."""
        self.discarded += self.total
        self.source = self.supernode = self.peers = 0
        self.by_peer.clear()


_ERROR_KINDS = {"SourceError": errors.SourceError, "DigestMismatch": errors.DigestMismatch,
                "SourceDenied": errors.SourceDenied}
SUPERNODE_FAULTS = ("LocalIOError", "InternalError")


class P2PDownload:
    """Fetch one task's pieces into `storage` via one supernode."""

    def __init__(self, supernode: SupernodeClient, register: RegisterRequest, storage: PieceFile,
                 parallel: int, piece_timeout_s: float, deadline: Optional[float],
                 bucket: Optional[TokenBucket] = None, sequential: bool = False,
                 on_progress: Callable[[ByteSplit], None] = lambda split: None,
                 on_registered: Callable[[str], None] = lambda task_id: None,
                 clock: Callable[[], float] = time.monotonic, split: Optional[ByteSplit] = None,
                 cancel: Optional[threading.Event] = None, restartable: bool = True,
                 fill: Optional[Fill] = None, connect_timeout_s: float = 0.0, trace=NO_TRACE):
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
        self.restartable = restartable   # False while a reader follows the file's bytes
        self.fill = fill if fill is not None else Fill()   # what a fallback to the source needs
        self.connect_timeout_s = connect_timeout_s
        self.trace = trace   # dfly/peer/trace.py: --trace's record, or NO_TRACE
        self.task_id = ""
        self._jobs: queue.Queue[Optional[PieceOrder]] = queue.Queue()
        self._workers: List[threading.Thread] = []
        self._paces = Paces()   # the workers' recent fetches: a relay lagging far behind them is left
        # Shared by the three kinds of threads; notified whenever any of it changes.
        # The reporter waits on `_reports` instead (the same lock), woken only when it
        # has work: a piece settled while the coordinator is in a call, or the end.
        # Woken at every piece's end, it went back to sleep each time, for nothing.
        lock = threading.RLock()
        self._lock = threading.Condition(lock)
        self._reports = threading.Condition(lock)
        self._inflight: Dict[int, PieceOrder] = {}
        self._done: List[int] = []           # verified, not reported yet
        self._failed: List[Failure] = []     # failed, not reported yet
        self._in_call = False                # the coordinator waits on a schedule call
        self._fatal: Optional[BaseException] = None
        self._piece_failures: Dict[int, int] = {}
        self._reporter: Optional[threading.Thread] = None
        self._closing = False
        self._last_call = clock()
        self._last_answer = clock()          # the supernode's last reply (ask_again)
        self._fetchers: List[PieceFetcher] = []   # the workers': what bytes arrive (ask_again)
        self._calls = self._heard = 0        # the coordinator's numbered calls (_schedule)
        self._report_calls = 0               # the reporter's (_report_request)

    @property
    def peer_id(self) -> str:
        return self.register_request.peer_id

    def run(self) -> str:
        """Download every piece; returns the task id. Raises typed errors."""
        self._start_workers()
        try:
            try:
                state = self._register()
            except _ContentChanged as e:
                state = self._start_over(e.content_version)
            self._start_reporter()
            while not self._finished(state):
                self._check_deadline()
                try:
                    state = self._round(state)
                except _ContentChanged as e:
                    state = self._start_over(e.content_version)
            self._flush_reports()
            return self.task_id
        finally:
            self._stop_threads()

    # rounds -------------------------------------------------------------------------
    def _register(self) -> TaskState:
        began = self.clock()
        self.task_id, state = self.supernode.register(self.register_request)
        self.trace.event("registered", supernode=self.supernode.address, task_id=self.task_id,
                         latency_s=round(self.clock() - began, 6), parallel=self.parallel)
        self.on_registered(self.task_id)
        with self._lock:   # re-announce what we hold after a re-register
            self._done = sorted(set(self._done) | self.storage.held)
            self._lock.notify_all()
        self._apply(state)
        return state

    def _round(self, state: TaskState) -> TaskState:
        with self._lock:
            self._raise_fatal()
            relays = sum(1 for order in self._inflight.values() if order.relay)
            want = min(self.parallel - (len(self._inflight) - relays),
                       self.parallel + RELAY_FETCHES - len(self._inflight))
            if state.piece_count is not None:   # near the end, fewer are left than workers
                want = min(want, state.piece_count - len(self.storage.held) - len(self._inflight))
            want = max(0, want)
            idle = self.clock() - self._last_call
            if not want and not (self._done or self._failed) and idle < KEEPALIVE_S:
                self._lock.wait(KEEPALIVE_S - idle)   # workers busy, or none needed
                return state
            # Our reports ride along: a worker that finished freed a slot, so this
            # one request both reports its piece and asks for the next.
            done, failed, self._done, self._failed = self._done, self._failed, [], []
            version = self.storage.content_version or None   # of `done`: taken with it
            self._in_call = True
            self._last_call = self.clock()
        request = ScheduleRequest(self.peer_id, done, failed, want, self.sequential,
                                  self._wait_s() if want else 0.0, version)
        began = self.clock()
        try:
            state = self._schedule(self.supernode, request, numbered=True)
        except errors.Gone:
            return self._register()
        finally:
            with self._lock:
                self._in_call = False
        self.trace.schedule(began, self.clock(), state.waited_s, want, len(state.pieces), len(done))
        self._apply(state)
        with self._lock:
            for order in state.pieces:
                if self.storage.has(order.num):
                    # Offered a piece we hold: a supernode that took the task over did not
                    # know it yet when we re-announced. Say so again, or the assignment
                    # stays open and others wait for it.
                    self._done.append(order.num)
                    self._lock.notify_all()
                elif order.num not in self._inflight:
                    if order.sha256:
                        self.fill.digests[order.num] = order.sha256
                    self._inflight[order.num] = order
                    self.storage.piece_begun(order.num)   # others may be sent to us for it now
                    self._jobs.put(order)
            while len(self._workers) < len(self._inflight):   # (relays: more than `parallel`)
                self._start_worker()
        return state

    def _schedule(self, client: SupernodeClient, request: ScheduleRequest,
                  numbered: bool = False) -> TaskState:
        """client.schedule, made again while the supernode only seems slow (ask_again).
        A call made again repeats its reports: a piece reported done twice is one piece,
        and its failures the supernode counts once (repeats_answered for a numbered
        call, report_call_came for the reporter's, which keep their number).
        `numbered`: the coordinator's calls, one at a time, are numbered, each attempt
        anew, and name the last reply heard: the supernode releases what a lost reply
        assigned (the reporter's calls assign nothing)."""
        while True:
            began, moved = self.clock(), self._moved()
            if numbered:
                self._calls += 1
                request = replace(request, call=self._calls, heard=self._heard)
            try:
                state = client.schedule(self.task_id, request)
                if numbered:
                    self._heard = request.call
            except SupernodeSlow as e:
                now = self.clock()
                if self.cancel.is_set() or not ask_again(now, self._last_answer, self._moved() > moved):
                    raise
                self._check_deadline()
                log.info("%s, while pieces still arrive: asking it again", e)
                self.trace.event("schedule_retry", supernode=client.address,
                                 waited_s=round(now - began, 6))
                continue
            self._last_answer = self.clock()
            return state

    def _moved(self) -> int:
        """Piece bytes arrived so far, over all workers (a failed fetch's too)."""
        return sum(fetcher.moved for fetcher in list(self._fetchers))

    def _wait_s(self) -> float:
        if self.deadline is None:
            return POLL_WAIT_S
        return max(0.0, min(POLL_WAIT_S, self.deadline - self.clock()))

    def _apply(self, state: TaskState) -> None:
        if state.state == "failed":
            if state.error_kind in SUPERNODE_FAULTS:
                raise SupernodeFailed(state.error_kind, "supernode %s: %s"
                                      % (self.supernode.address, state.error))
            kind = _ERROR_KINDS.get(state.error_kind, errors.DflyError)
            raise kind(state.error or "the supernode gave up on this task")
        self._check_version(state.content_version)
        if state.piece_size is not None:   # None until the supernode has decided it
            learnt = self.storage.length is None and state.length is not None
            self.storage.set_geometry(state.length, state.piece_size)
            if learnt:   # the bar and --timeout's message say the size from now on
                self.on_progress(self.split)
        if state.validator:
            self.fill.validator = state.validator

    def _check_version(self, version: str) -> None:
        """Take the task's content version; _ContentChanged when pieces of another
        one are held or on their way."""
        with self._lock:
            storage = self.storage
            if not version or version == storage.content_version:
                return
            if not messages.stale(storage.content_version, version) or not (storage.held or self._inflight):
                storage.content_version = version   # nothing of another version here
                return
        raise _ContentChanged(version)

    def _start_over(self, version: str) -> TaskState:
        """Drop every piece (they are of content the source no longer has), leave the
        task (its assignments to us were of the old content) and register again."""
        while True:
            storage = self.storage
            if not self.restartable or storage.restarts >= MAX_RESTARTS:
                raise errors.SourceChanged(
                    "the source of %s changed during the download (content version %s, now %s)%s"
                    % (self.register_request.url[:200], storage.content_version, version,
                       "; it had changed once before" if storage.restarts else ""))
            with self._lock:
                log.warning("the source of %s changed during the download: starting over on the "
                            "new content (%s held dropped)",
                            self.register_request.url[:200], human_bytes(storage.held_bytes()))
                storage.start_over(version)   # in-flight pieces of the old content now settle unused
                self.split.replaced()   # what came of the old content is not in the file
                self.fill.digests.clear()   # the new content's come with its assignments
                self.fill.validator = None
                self._done, self._failed = [], []
                self._piece_failures.clear()
                self._lock.wait_for(lambda: not self._inflight, self.piece_timeout_s + 5)
            try:
                self.supernode.leave(self.task_id, self.peer_id)
            except errors.DflyError:
                pass   # a supernode that is down shows it when we register
            try:
                return self._register()
            except _ContentChanged as e:
                version = e.content_version

    def _finished(self, state: TaskState) -> bool:
        with self._lock:
            self._raise_fatal()
            return (state.piece_count is not None and state.length is not None
                    and len(self.storage.held) >= state.piece_count and not self._inflight)

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def _settle(self, order: PieceOrder, error: Optional[str] = None,
                fatal: Optional[BaseException] = None, discarded: int = 0) -> None:
        """A worker's result: count it, queue its report, free the worker's slot."""
        with self._lock:
            self._inflight.pop(order.num, None)
            self._lock.notify_all()
            if self._in_call:
                self._reports.notify()
            if error is not None or fatal is not None:
                self.storage.piece_abandoned(order.num)   # whoever relays it from us stops
            self.split.discarded += discarded
            if fatal is None and messages.stale(order.content_version, self.storage.content_version):
                if error is None:   # whole and good, but of the content before a restart
                    self.split.discarded += order.size
                return   # of the content before a restart: neither held nor reported
            if fatal is not None:
                self._fatal = self._fatal or fatal
            elif error is not None:
                self._failed.append(Failure(order.num, order.holder, error))
                failures = self._piece_failures[order.num] = self._piece_failures.get(order.num, 0) + 1
                if failures >= MAX_PIECE_FAILURES:
                    self._fatal = self._fatal or SwarmStuck(
                        "piece %d failed %d times (last from %s: %s)"
                        % (order.num, failures, order.holder, error))
            else:
                self.storage.mark_held(order.num, order.sha256)
                self._done.append(order.num)
                if order.holder == SUPERNODE:
                    self.split.supernode += order.size
                else:
                    self.split.peers += order.size
                    self.split.by_peer[order.holder] = self.split.by_peer.get(order.holder, 0) + order.size
                self.on_progress(self.split)

    def _check_deadline(self) -> None:
        if self.cancel.is_set():
            raise errors.Cancelled("download cancelled")
        if self.deadline is not None and self.clock() > self.deadline:
            raise errors.DownloadTimeout("download timed out after %s"
                                         % received(self.split.total, self.storage.length))

    # the reporter -------------------------------------------------------------------
    def _start_reporter(self) -> None:
        self._reporter = threading.Thread(target=self._report_loop, name="piece-reporter", daemon=True)
        self._reporter.start()

    def _report_loop(self) -> None:
        client = None
        try:
            while True:
                with self._lock:
                    # Only while the coordinator is held in a long-poll (else its
                    # next request carries the reports), and at the end.
                    while not (self._closing or (self._in_call and (self._done or self._failed))):
                        self._reports.wait()
                    if not (self._done or self._failed):
                        return
                    done, failed, self._done, self._failed = self._done, self._failed, [], []
                    version = self.storage.content_version or None   # of `done`: taken with it
                if client is None or client.address != self.supernode.address:   # it may move
                    if client is not None:
                        client.close()
                    client = self.supernode.clone()
                try:
                    began = self.clock()
                    reply = self._schedule(client, self._report_request(done, failed, version))
                    self.trace.schedule(began, self.clock(), reply.waited_s, 0, 0, len(done), reporter=True)
                except errors.Gone:
                    pass   # the coordinator registers again and re-announces all we hold
                except Exception as e:   # SupernodeDown above all: the coordinator fails over
                    with self._lock:
                        self._fatal = self._fatal or e
                finally:
                    with self._lock:
                        self._lock.notify_all()
        finally:
            if client is not None:
                client.close()

    def _report_request(self, done: List[int], failed: List[Failure],
                        version: Optional[str]) -> ScheduleRequest:
        """The reporter's next call, numbered; made again (_schedule) with its number."""
        self._report_calls += 1
        return ScheduleRequest(self.peer_id, done, failed, want=0, content_version=version,
                               report_call=self._report_calls)

    def _flush_reports(self) -> None:
        """Tell the supernode about the last pieces, so others can fetch them from us."""
        self._close_reporter()
        with self._lock:
            self._raise_fatal()

    def _close_reporter(self) -> None:
        """The reporter sends what is still unreported, then ends."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
            self._reports.notify()
        if self._reporter is not None:
            self._reporter.join(self.supernode.timeout_s + 5)

    # workers ------------------------------------------------------------------------
    def _start_workers(self) -> None:
        for _ in range(self.parallel):
            self._start_worker()

    def _start_worker(self) -> None:
        t = threading.Thread(target=self._work, name="piece-worker-%d" % len(self._workers), daemon=True)
        t.start()
        self._workers.append(t)

    def _stop_threads(self) -> None:
        for _ in self._workers:
            self._jobs.put(None)
        for t in self._workers:
            t.join(self.piece_timeout_s + 5)
        self._close_reporter()   # after the workers: it reports what they settled last

    def _work(self) -> None:
        fetcher = PieceFetcher(self.piece_timeout_s, self.bucket, self.clock, self.peer_id,
                               connect_timeout_s=self.connect_timeout_s, tls=self.supernode.tls,
                               proof=lambda: self.supernode.peer_secret, paces=self._paces)
        self._fetchers.append(fetcher)
        try:
            while True:
                order = self._jobs.get()
                if order is None:
                    return
                addr = order.addr or self.supernode.address
                began = self.clock()
                try:
                    fetcher.fetch(addr, self.task_id, order, self.storage.write,
                                  on_block=functools.partial(self.storage.block_verified, order.num))
                    arrived = self.clock()
                    self._settle(order)
                    self.trace.piece(order.num, order.holder, addr, order.size, began, arrived,
                                     self.clock(), relay=fetcher.relayed or order.relay)
                except PieceFailed as e:
                    arrived = self.clock()
                    self._settle(order, error=str(e), discarded=fetcher.received)
                    self.trace.piece(order.num, order.holder, addr, order.size, began, arrived,
                                     arrived, error=str(e), relay=fetcher.relayed or order.relay)
                except Exception as e:   # LocalIOError, or a bug: end the download with it,
                    self._settle(order, fatal=e)   # not wait for this piece forever
        finally:
            fetcher.close()
