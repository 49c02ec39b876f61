"""The one place `dfly bench` is wired: M simulated peers in this process.

A simulated peer is a real peer without the CLI around it: its own uploader
(a listener on its own port serving what it holds), its own supernode client
(which times every register and schedule call) and a P2PDownload with its
piece workers writing its own copy. Peers start together or in waves; each
keeps serving what it holds until every peer is done, so a late wave fetches
from earlier ones as it would in a real cluster; then all of them leave. With
TLS settings every simulated peer serves and dials with TLS, sharing one
certificate (they are one host).

What is shared is only the harness: a few threads accept for all the peers'
uploaders (httpd.Acceptor), and a few close the peers at the end. The
supernode sees each simulated peer as it would a real one: its own port, its
own registration, schedule calls and piece transfers.
"""
import gc
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Tuple

from dfly import errors
from dfly.bench.config import BenchConfig
from dfly.bench.report import CallRecord, PeerRecord, summarize
from dfly.httpd import Acceptor, Server, parse_server_timing
from dfly.peer.downloader import P2PDownload
from dfly.peer.storage import PieceFile
from dfly.peer.uploader import UploaderApp
from dfly.protocol.address import upload_address
from dfly.protocol.messages import RegisterRequest, ScheduleRequest, TaskState
from dfly.supernode.client import PeerSecrets, SupernodeClient
from dfly.tls import TLS

THREAD_STACK_BYTES = 512 * 1024   # thousands of threads: keep each one's reservation small
# Closing is a leave call and a few closes per peer, none of them waiting on a
# poll: a few threads keep up, where hundreds queued for the GIL.
CLOSE_WORKERS = 8
# The interpreter's switch interval while the bench runs: with hundreds of threads
# waiting for the GIL, each wakes every interval to ask for it (futex calls, most
# of the bench's system time at the default 5 ms); its threads block on I/O long
# before 50 ms (docs/BENCHMARKS.md, "`dfly bench` at 5000 peers").
SWITCH_INTERVAL_S = 0.05
# Each simulated peer keeps its own listening port and uploader server, as a real
# peer does; only the accept loop (httpd.Acceptor) is shared: a thread per peer
# was 5000 threads taking the GIL in turn, most of the bench's system time. Not one
# acceptor for all, though: each accepted connection gets its thread (Thread.start
# waits until it has run, a GIL hand-off away), so one loop accepting for a whole
# wave queued the wave's piece requests behind each other.
PEERS_PER_ACCEPTOR = 100   # enough acceptors that a wave's connections do not queue


class TimedSupernodeClient(SupernodeClient):
    """A SupernodeClient that records how long each register and schedule call took."""

    def __init__(self, address: str, record: PeerRecord, clock: Callable[[], float],
                 tls: Optional[TLS] = None, secrets: Optional[PeerSecrets] = None):
        super().__init__(address, tls=tls, secrets=secrets)
        self.record = record
        self.clock = clock

    def register(self, request: RegisterRequest):
        began = self.clock()
        reply = super().register(request)
        self.record.calls.append(CallRecord("register", self.clock() - began, False,
                                            server_s=parse_server_timing(self.server_timing)))
        return reply

    def clone(self) -> "TimedSupernodeClient":
        """The download's reporter connection: its calls are timed into the same record."""
        return TimedSupernodeClient(self.address, self.record, self.clock, self.tls, self.secrets)

    def schedule(self, task_id: str, request: ScheduleRequest) -> TaskState:
        began = self.clock()
        state = super().schedule(task_id, request)
        self.record.calls.append(CallRecord("schedule", self.clock() - began, request.wait_s > 0,
                                            len(state.pieces), state.waited_s,
                                            parse_server_timing(self.server_timing)))
        return state


class SimulatedPeer:
    def __init__(self, index: int, wave: int, config: BenchConfig, url: str, folder: str,
                 clock: Callable[[], float], acceptor: Acceptor, tls: Optional[TLS] = None):
        self.record = PeerRecord(index, wave)
        self.tls = tls
        self.config = config
        self.url = url
        self.clock = clock
        self.peer_id = "bench-%d-%s" % (index, uuid.uuid4().hex[:8])
        self.path = os.path.join(folder, "peer-%d.part" % index)
        self.uploader = UploaderApp()
        self.acceptor = acceptor
        self.server: Optional[Server] = None
        self.supernode: Optional[TimedSupernodeClient] = None
        self.storage: Optional[PieceFile] = None
        self.task_id = ""
        self.thread: Optional[threading.Thread] = None

    def start(self, due: float, deadline: float, ended: Callable[[], None]) -> None:
        thread = threading.Thread(target=self.run, args=(due, deadline, ended), daemon=True,
                                  name="bench-peer-%d" % self.record.index)
        thread.start()
        self.thread = thread

    def run(self, due: float, deadline: float, ended: Callable[[], None] = lambda: None) -> None:
        """`due`: when its wave was to start (the bench reports how late it began);
        `ended` is called when the download has ended (the peer goes on serving)."""
        try:
            self._download(due, deadline)
        finally:
            ended()

    def _download(self, due: float, deadline: float) -> None:
        began = self.clock()
        self.record.start_lag_s = max(0.0, began - due)
        try:
            self.supernode = TimedSupernodeClient(self.config.supernode, self.record, self.clock,
                                                  self.tls)
            self.uploader.secrets = self.supernode.secrets   # checks the tokens others bring
            host = self.config.advertise or self.supernode.local_host()
            self.server = Server(upload_address(self.config.upload_listen, host), self.uploader,
                                 tls=self.tls,
                                 # every simulated peer is one client host: no per-host share
                                 max_connections_per_client=0)
            self.acceptor.add(self.server)
            request = RegisterRequest(url=self.url, peer_id=self.peer_id,
                                      peer_port=self.server.port, peer_host=host)
            self.storage = storage = PieceFile(self.path)
            download = P2PDownload(self.supernode, request, storage, self.config.parallel,
                                   self.config.piece_timeout_s, deadline,
                                   on_registered=self._registered, clock=self.clock)
            download.run()
            self.record.seconds = self.clock() - began
            self.record.length = storage.length or 0
            self.record.bytes_from_supernode = download.split.supernode
            self.record.bytes_from_peers = download.split.peers
        except errors.DflyError as e:
            self.record.error = "%s: %s" % (type(e).__name__, e)
        except OSError as e:   # no port, no file descriptor, no thread
            self.record.error = "%s: %s" % (type(e).__name__, e)
        except RuntimeError as e:   # "can't start new thread"
            self.record.error = "RuntimeError: %s" % e

    def _registered(self, task_id: str) -> None:
        self.task_id = task_id
        self.uploader.publish(task_id, self.storage)

    def close(self) -> None:
        if self.supernode is not None:
            if self.task_id:
                try:
                    self.supernode.leave(self.task_id, self.peer_id)
                except errors.DflyError:
                    pass
            self.supernode.close()
        if self.server is not None:
            self.acceptor.remove(self.server)
            self.server.drain(5.0)   # a piece still going out to a late peer
            self.server.server_close()
        if self.storage is not None:
            self.storage.close()
        try:
            os.remove(self.path)
        except OSError:
            pass


def run(config: BenchConfig, url: str, clock: Callable[[], float] = time.monotonic) -> dict:
    """Run the simulated peers against the supernode; the summary (report.summarize)."""
    return summarize(*simulate(config, url, clock))


def simulate(config: BenchConfig, url: str,
             clock: Callable[[], float] = time.monotonic) -> Tuple[List[PeerRecord], float, float]:
    """Run the simulated peers; their records, the wall time and this process's CPU time."""
    if not config.supernode:
        raise ValueError("--supernode is required: the supernode to measure")
    if config.peers < 1 or config.waves < 1 or config.parallel < 1:
        raise ValueError("--peers, --waves and --parallel must be at least 1")
    if config.max_live < 0:
        raise ValueError("--max-live must be 0 (no bound) or more")
    _raise_file_limit(config.peers * (config.parallel + 4) + 64)
    folder = config.data_dir or tempfile.mkdtemp(prefix="dfly-bench-")
    os.makedirs(folder, exist_ok=True)
    waves = min(config.waves, config.peers)
    tls = TLS.from_config(config)
    acceptors = [Acceptor("bench-acceptor-%d" % i).start()
                 for i in range(-(-config.peers // PEERS_PER_ACCEPTOR))]
    peers = [SimulatedPeer(i, i * waves // config.peers, config, url, folder, clock,
                           acceptors[i % len(acceptors)], tls)
             for i in range(config.peers)]
    # --max-live: a wave's peer starts once fewer than that many are downloading
    live = threading.BoundedSemaphore(config.max_live or config.peers)
    old_stack = threading.stack_size(THREAD_STACK_BYTES)
    # A full collection over a thousand peers' objects stops every thread of this
    # process for tens of milliseconds, which the peers would book as the
    # supernode's latency. A run makes little cyclic garbage: collect afterwards.
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    stop = threading.Event()
    old_switch = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    started, cpu_started = clock(), _cpu_s()
    deadline = started + config.timeout_s
    try:
        for wave in range(waves):
            due = started + wave * config.wave_interval_s
            if wave and stop.wait(max(0.0, due - clock())):
                break
            for peer in peers:
                if peer.record.wave == wave and live.acquire(timeout=max(0.1, deadline - clock())):
                    _start(peer, due, deadline, live)
        for thread in [p.thread for p in peers if p.thread is not None]:
            thread.join(max(0.1, deadline - clock() + config.piece_timeout_s + 10))
        ended, cpu_used = clock(), _cpu_s() - cpu_started
    finally:
        stop.set()
        sys.setswitchinterval(old_switch)
        threading.stack_size(old_stack)
        if collecting:
            gc.enable()
        with ThreadPoolExecutor(CLOSE_WORKERS, thread_name_prefix="bench-close") as pool:
            list(pool.map(SimulatedPeer.close, peers))
        for acceptor in acceptors:
            acceptor.stop()
        if not config.data_dir:
            shutil.rmtree(folder, ignore_errors=True)
    for peer in peers:
        if peer.thread is None:
            peer.record.error = peer.record.error or "Cancelled: never started"
        elif peer.thread.is_alive() and peer.record.error is None:
            peer.record.error = "DownloadTimeout: still running at the deadline"
    return [p.record for p in peers], ended - started, cpu_used


def _start(peer: SimulatedPeer, due: float, deadline: float, live: threading.BoundedSemaphore) -> None:
    """Start `peer` on its thread; it frees its `live` slot when its download ends."""
    try:
        peer.start(due, deadline, live.release)
    except RuntimeError as e:   # "can't start new thread": counted as that peer's failure
        live.release()
        peer.record.error = "RuntimeError: %s" % e


def _cpu_s() -> float:
    """CPU seconds this process has used (all its threads)."""
    times = os.times()
    return times.user + times.system


def _raise_file_limit(wanted: int) -> None:
    """Each simulated peer holds a listener, a supernode connection and piece connections."""
    try:
        import resource
    except ImportError:   # not a Unix: nothing to raise
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
