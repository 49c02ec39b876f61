"""dfly.Client: the public Python API, and the one place a download is wired.

    with Client(supernodes=["10.0.0.1:8002"], data_dir="/var/lib/dfly") as c:
        result = c.download(url, "/tmp/file", digest="sha256:...")
        print(result.bytes_from_peers, result.bytes_from_source)

A Client owns one uploader (started at the first download) and one peer id, so
everything it downloaded stays available to other peers until close() (or,
with seed_for, until idle that long). The CLI is a thin layer over this class.
With TLS settings (tls_cert, tls_key, tls_ca, ...: dfly/tls.py) its uploader
serves TLS and it dials supernodes and peers with TLS.
"""
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterable, Iterator, Optional

from dfly import errors, options
from dfly.datadir import default_data_dir
from dfly.httpd import Listener, check_can_listen
from dfly.peer import output
from dfly.peer.config import CLUSTER_FAILOVER_S, PeerConfig
from dfly.peer.downloader import ByteSplit, P2PDownload, SupernodeFailed, SwarmStuck
from dfly.peer.filling import servable_end
from dfly.peer.progress import human_bytes, received
from dfly.peer.source import Fill, download_from_source, fill_from_source
from dfly.peer.storage import FinishedFile, PieceFile
from dfly.peer.trace import NO_TRACE
from dfly.peer.uploader import UploaderApp
from dfly.peer.verify import RunningDigest, check_file
from dfly.protocol.address import WILDCARDS_V4, parse_address, upload_address
from dfly.protocol.digest import parse_digest
from dfly.protocol.messages import RegisterRequest, ScheduleRequest, stale
from dfly.protocol.pieces import piece_count
from dfly.protocol.ratelimit import TokenBucket
from dfly.protocol.task import split_filters
from dfly.protocol.urls import normalize_url
from dfly.sources.config import SourceCredentials, source_access
from dfly.supernode.client import PeerSecrets, SupernodeClient, SupernodeDown, leave_quietly
from dfly.tls import TLS

log = logging.getLogger("dfly.client")

Progress = Callable[[int, Optional[int], ByteSplit], None]


FAILOVER_PAUSE_S = 0.25


@dataclass
class _Job:
    """One download's inputs and running totals, as the wiring passes them around."""
    url: str
    storage: PieceFile
    digest: Optional[str]
    headers: Dict[str, str]
    filters: list
    identifier: Optional[str]
    deadline: Optional[float]
    bucket: Optional[TokenBucket]
    sequential: bool
    report: Callable[[ByteSplit], None]
    split: ByteSplit
    cancel: threading.Event
    restartable: bool = True   # may start over if the source changes (no reader follows the bytes)
    failed: Optional[SupernodeFailed] = None   # the last supernode that failed the task itself
    fill: Fill = field(default_factory=Fill)   # what P2P learnt, for a fallback by piece
    trace: object = NO_TRACE   # --trace's record (dfly/peer/trace.py)


@dataclass
class DownloadResult:
    url: str
    path: str
    length: int
    task_id: str
    elapsed_s: float
    bytes_from_source: int
    bytes_from_supernode: int
    bytes_from_peers: int
    via: str   # "p2p", or "source" when the source gave some (or all) of it
    bytes_discarded: int = 0   # received but not in the file: failed checks, replaced copies
    bytes_from_cache: int = 0   # copied from the daemon's cache: a hand-off it already had

    def to_json(self) -> dict:
        return asdict(self)


class Client:
    def __init__(self, supernodes: Iterable[str] = (), data_dir: Optional[str] = None,
                 config: Optional[PeerConfig] = None, download_bucket: Optional[TokenBucket] = None,
                 upload_bucket: Optional[TokenBucket] = None,
                 source_credentials: Optional[SourceCredentials] = None, **settings):
        """`settings` are PeerConfig fields: rate_limit, timeout_s, seed_for_s, parallel, ...
        With a `config`, they (and `supernodes`, `data_dir`) go over it, as flags go over a
        config file. `download_bucket` / `upload_bucket`: host-wide limits shared with other
        clients (a download_bucket replaces the per-download rate_limit). `source_credentials`:
        for s3 and ftp sources (default: gathered from the environment and the usual
        files when a source is first read, sources/credentials.py)."""
        if config is None:
            settings.setdefault("seed_for_s", 0)   # a library seeds only when asked
            config = options.build(PeerConfig, None, None, supernode=list(supernodes) or None,
                                   data_dir=data_dir, **settings)
        else:
            config = options.replace(config, supernode=list(supernodes) or None, data_dir=data_dir,
                                     **settings)
        self.config = config
        self.tls = TLS.from_config(config)   # ValueError: settings or files that do not load
        self.data_dir = os.path.abspath(config.data_dir or default_data_dir(os.environ))
        self.peer_id = _random_hex(16)
        self.secrets = PeerSecrets()   # what proves peer_id to each supernode
        self.clock = time.monotonic
        self._uploader: Optional[UploaderApp] = None
        self._listener: Optional[Listener] = None
        self._seeded: Dict[str, str] = {}      # task id -> supernode address
        self._registrations: Dict[str, RegisterRequest] = {}   # task id -> how we registered
        self._temp_files = []                  # streamed downloads still being seeded: (path, lock fd)
        self._source_credentials = source_credentials
        self._partial = set()                  # files of downloads under way (see abandon)
        self.last_result: Optional[DownloadResult] = None
        self._lock = threading.Lock()
        self.download_bucket = download_bucket
        self.upload_bucket = upload_bucket

    # public API -----------------------------------------------------------------------
    def download(self, url: str, path: str, digest: Optional[str] = None,
                 headers: Optional[Dict[str, str]] = None, filters: Iterable[str] = (),
                 identifier: Optional[str] = None, progress: Optional[Progress] = None,
                 sequential: bool = False, on_storage: Optional[Callable[[PieceFile], None]] = None,
                 cancel: Optional[threading.Event] = None, trace=NO_TRACE) -> DownloadResult:
        """Download `url` to `path` (via a temporary name, renamed once complete and verified).
        `sequential`: pieces in file order; `on_storage(piece_file)` is called before the first
        piece, so a caller can read verified pieces while they arrive; `cancel` stops it;
        `trace`: a dfly.peer.trace.Trace that records the download's steps."""
        _check_digest(digest)
        url = normalize_url(url)
        path = os.path.abspath(path)
        target, in_order = output.resolve(path)
        if in_order:   # a device or FIFO: written to as a stream, never replaced
            return self._download_in_order(url, target, path, digest=digest, headers=headers,
                                           filters=filters, identifier=identifier, progress=progress,
                                           trace=trace)
        output.remove_stale_parts(target)   # left by a killed get of the same file
        temp, fd = output.create_part(target, _random_hex(8), path)
        storage = PieceFile(temp, shown=path, fd=fd)
        self._partial.add(temp)
        try:
            if on_storage is not None:
                on_storage(storage)
            result = self._fetch(url, storage, digest, headers or {}, list(filters), identifier,
                                 progress, sequential=sequential, cancel=cancel,
                                 restartable=on_storage is None, trace=trace)
            try:
                os.replace(temp, target)
            except OSError as e:
                raise errors.LocalIOError("cannot write %s: %s" % (path, e.strerror or e))
            storage.path = target
        except BaseException:
            self._discard(storage)
            raise
        finally:
            self._partial.discard(temp)
            storage.close()
        result.path = path
        self._after_download(result.task_id, storage)
        self.last_result = result
        return result

    def _download_in_order(self, url: str, target: str, path: str, **kwargs) -> DownloadResult:
        out = output.open_in_order(target, path)
        stream = self.stream(url, **kwargs)
        try:
            for chunk in stream:
                output.write(out, chunk, path)
        except BaseException:
            stream.close()
            output.close(out, path, quietly=True)
            raise
        output.close(out, path)
        result = self.last_result
        result.path = path
        return result

    def stream(self, url: str, digest: Optional[str] = None, headers: Optional[Dict[str, str]] = None,
               filters: Iterable[str] = (), identifier: Optional[str] = None,
               progress: Optional[Progress] = None, trace=NO_TRACE) -> Iterator[bytes]:
        """Yield the content of `url` in order, while pieces are still arriving.
        The whole-file digest (if given) is checked before the last chunk is yielded."""
        _check_digest(digest)
        url = normalize_url(url)
        tmp_dir = os.path.join(self.data_dir, "peer", "tmp")
        _makedirs(tmp_dir)
        output.remove_unheld(tmp_dir, ".part")   # left by a killed get -o -
        tag = _random_hex(32)
        path, fd = output.create_locked(
            lambda attempt: os.path.join(tmp_dir, tag + ("%x" % attempt if attempt else "") + ".part"),
            "a temporary file in %s" % tmp_dir)
        storage = PieceFile(path, fd=fd)
        self._partial.add(storage.path)
        outcome: Dict[str, object] = {}
        cancel = threading.Event()

        def run():
            try:
                outcome["result"] = self._fetch(url, storage, digest, headers or {}, list(filters),
                                                identifier, progress, sequential=True, cancel=cancel,
                                                restartable=False, trace=trace)
            except BaseException as e:
                outcome["error"] = e
            with storage.cond:
                outcome["finished"] = True
                storage.cond.notify_all()

        worker = threading.Thread(target=run, name="stream-download", daemon=True)
        worker.start()
        complete = False
        try:
            yield from _read_in_order(storage, outcome)
            complete = True
        finally:   # also when the caller stops reading early (GeneratorExit)
            cancel.set()
            worker.join()
            self._partial.discard(storage.path)
            lock = os.dup(storage.fd)   # the file stays locked (no sweep takes it) while kept
            storage.close()
            if complete:
                self.last_result = outcome["result"]
                self._after_download(self.last_result.task_id, storage)
            if complete and self.last_result.task_id in self._seeded:
                self._temp_files.append((storage.path, lock))
            else:
                self._discard(storage)
                os.close(lock)

    def close(self) -> None:
        """Stop serving pieces and tell the supernodes this peer is gone."""
        with self._lock:
            seeded, self._seeded = dict(self._seeded), {}
            listener, self._listener = self._listener, None
        for task_id, address in seeded.items():
            leave_quietly(address, task_id, self.peer_id, self.tls, secrets=self.secrets)
        if listener is not None:
            listener.stop()
        while self._temp_files:
            path, lock = self._temp_files.pop()
            _remove(path)
            os.close(lock)

    def claim_upload_address(self) -> None:
        """For a long-running program (the daemon): an upload address that cannot be
        listened on (a port taken, not this host's address) is an error now, not at the
        first download. With a host given, or --advertise, the family is known and the
        uploader starts now; a wildcard's family follows the address this host reaches a
        supernode from, known only then, so the IPv4 wildcard it would bind is tried (it
        fails too where the port is taken on 127.0.0.1 or by a dual-stack listener)."""
        host, port = parse_address(self.config.upload_listen, 0)
        if host not in WILDCARDS_V4 or self.config.advertise:
            self._ensure_uploader(self.config.advertise or "")
        elif port != 0:
            check_can_listen(upload_address(self.config.upload_listen, ""))

    def abandon(self) -> None:
        """Remove the files of downloads still under way, at once, without waiting for
        them to stop: for a process about to exit (`dfly get` past its --timeout)."""
        for path in list(self._partial):
            _remove(path)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def uploader_address(self) -> Optional[tuple]:
        return self._listener.address if self._listener else None

    @property
    def seeding(self) -> Dict[str, str]:
        """Tasks this client still serves: task id -> supernode address."""
        return dict(self._seeded)

    @property
    def uploaded_bytes(self) -> int:
        return self._uploader.uploaded_bytes if self._uploader is not None else 0

    @property
    def uploads_in_progress(self) -> int:
        """Pieces this client's uploader is sending right now (its upload slots in use)."""
        listener = self._listener   # (handed over to a seeder meanwhile: None)
        return listener.server.requests_in_progress if listener is not None else 0

    def release(self, task_id: str) -> None:
        """Stop serving `task_id` and tell its supernode; the downloaded file stays."""
        with self._lock:
            address = self._seeded.pop(task_id, None)
        if self._uploader is not None:
            self._uploader.withdraw(task_id)
        if address:
            leave_quietly(address, task_id, self.peer_id, self.tls, secrets=self.secrets)

    def content_version_of(self, task_id: str) -> str:
        """The content version of the pieces this client serves for `task_id` ("" unknown)."""
        pieces = self._uploader.served(task_id) if self._uploader is not None else None
        return getattr(pieces, "content_version", "") if pieces is not None else ""

    def registration(self, task_id: str) -> Optional[RegisterRequest]:
        """How this client registered for `task_id` (to announce it again elsewhere)."""
        return self._registrations.get(task_id)

    def announce(self, url: str, path: str, piece_size: int, digest: Optional[str] = None,
                 headers: Optional[Dict[str, str]] = None, filters: Iterable[str] = (),
                 identifier: Optional[str] = None, content_version: str = "") -> Optional[str]:
        """Offer the complete, verified file at `path` as the task of `url` (after a restart,
        or when its supernode forgot us): register with the first supernode that answers and
        report every piece held. The task id; None when no supernode has the task whole yet
        (try again later) or it knows a file of another size. `content_version`: the task's
        content version the file is of (see `content_version_of`); SourceChanged when the
        supernode's is another (the source changed since: the file is no longer offered)."""
        _check_digest(digest)
        url = normalize_url(url)
        try:
            pieces = FinishedFile(path, os.path.getsize(path), piece_size, content_version)
        except OSError as e:
            raise errors.LocalIOError("cannot read %s: %s" % (path, e.strerror or e))
        for address in self.config.supernode:
            supernode = SupernodeClient(address, timeout_s=10, tls=self.tls, secrets=self.secrets)
            try:
                host = self.config.advertise or supernode.local_host()
                uploader = self._ensure_uploader(host)
                request = RegisterRequest(url=url, peer_id=self.peer_id,
                                          peer_port=self._listener.address[1], peer_host=host,
                                          headers=headers or {}, filters=split_filters(filters),
                                          digest=digest.lower() if digest else None,
                                          identifier=identifier, location=self.config.location)
                task_id, state = supernode.register(request)
                if stale(content_version, state.content_version):
                    leave_quietly(supernode.address, task_id, self.peer_id, self.tls, secrets=self.secrets)
                    raise errors.SourceChanged("the source of %s changed since %s was downloaded"
                                               % (url[:200], path))
                if state.state != "done" or (state.length, state.piece_size) != (pieces.length,
                                                                                piece_size):
                    leave_quietly(supernode.address, task_id, self.peer_id, self.tls, secrets=self.secrets)
                    return None
                uploader.publish(task_id, pieces)
                supernode.schedule(task_id, ScheduleRequest(self.peer_id, sorted(pieces.held), want=0,
                                                            content_version=content_version or None))
                with self._lock:
                    self._seeded[task_id] = supernode.address
                    self._registrations[task_id] = request
                return task_id
            except SupernodeDown as e:
                log.warning("%s; trying the next supernode", e)
            finally:
                supernode.close()
        return None

    def repair(self, task_id: str, path: str, bad: Iterable[int],
               on_storage: Optional[Callable[[PieceFile], None]] = None,
               cancel: Optional[threading.Event] = None) -> Optional[DownloadResult]:
        """Fetch again, through the swarm, the pieces `bad` of the finished file at `path`
        that this client serves as `task_id` (they were found damaged on disk), writing them
        in place: the supernode is left (it forgets every piece we held), then told the good
        ones again, and only the bad ones are downloaded and verified. None when this client
        does not know the task or no supernode could deliver; SourceChanged when the task's
        content is no longer the file's (a repair never starts over)."""
        request = self._registrations.get(task_id)
        served = self._uploader.served(task_id) if self._uploader is not None else None
        if request is None or served is None or not getattr(served, "piece_size", 0):
            return None
        good = set(range(piece_count(served.length, served.piece_size))) - set(bad)
        storage = PieceFile.reopen(path, served.length, served.piece_size, good,
                                   getattr(served, "content_version", ""))
        self.release(task_id)   # the bad pieces are not offered from here meanwhile
        if on_storage is not None:
            on_storage(storage)
        started = self.clock()
        deadline = started + self.config.timeout_s if self.config.timeout_s > 0 else None
        job = _Job(request.url, storage, request.digest, request.headers, request.filters,
                   request.identifier, deadline, self.download_bucket, False, lambda split: None,
                   ByteSplit(), cancel or threading.Event(), restartable=False)
        try:
            repaired = self._via_supernodes(job)
        finally:
            storage.close()
        if repaired is None:
            return None
        split = job.split
        return DownloadResult(request.url, path, served.length, repaired, self.clock() - started,
                              split.source, split.supernode, split.peers, "p2p", split.discarded)

    def detach_listener(self) -> Optional[tuple]:
        """Hand the uploader over to the caller (for a detached seeder): returns
        (listener, uploader app, {task id: supernode}) and forgets them here."""
        with self._lock:
            if self._listener is None or not self._seeded:
                return None
            out = (self._listener, self._uploader, dict(self._seeded))
            self._listener, self._seeded = None, {}
        return out

    # wiring ---------------------------------------------------------------------------
    def _fetch(self, url, storage, digest, headers, filters, identifier, progress,
               sequential, cancel: Optional[threading.Event] = None,
               restartable: bool = True, trace=NO_TRACE) -> DownloadResult:
        started = self.clock()
        deadline = started + self.config.timeout_s if self.config.timeout_s > 0 else None
        bucket = self.download_bucket
        if bucket is None and self.config.rate_limit > 0:
            bucket = TokenBucket(self.config.rate_limit, started)
        job = _Job(url, storage, digest, headers, filters, identifier, deadline, bucket, sequential,
                   _progress_reporter(storage, progress), ByteSplit(), cancel or threading.Event(),
                   restartable, trace=trace)
        running = RunningDigest(storage, digest).start() if digest else None
        try:
            task_id, via = self._via_supernodes(job), "p2p"
        finally:
            if running is not None:
                running.stop()
        if task_id is None:
            if self.config.no_back_source and job.failed is not None:
                kind = errors.LocalIOError if job.failed.kind == "LocalIOError" else errors.P2PUnavailable
                raise kind("%s; --no-back-source given" % job.failed)
            if self.config.no_back_source:
                raise errors.P2PUnavailable("no supernode reachable (%s) and --no-back-source given"
                                            % (", ".join(self.config.supernode) or "none configured"))
            task_id, via = "", "source"
            self._from_source(job)
        began = self.clock()
        try:
            if running is not None and via == "p2p" and not storage.restarts:
                running.finish()
            elif digest:   # the source, or new content after a restart, wrote (some of) the file: check all
                check_file(storage.path, digest)
        except errors.DflyError as e:
            trace.event("digest_check", seconds=round(self.clock() - began, 6), ok=False, error=str(e)[:200])
            raise
        if digest:
            trace.event("digest_check", seconds=round(self.clock() - began, 6), ok=True,
                        streamed=running is not None and via == "p2p" and not storage.restarts)
        else:   # each piece was still checked against the supernode's digest
            trace.event("digest_check", ok=None, skipped="no --digest given")
        split = job.split
        return DownloadResult(url, storage.path, storage.length or 0, task_id,
                              self.clock() - started, split.source, split.supernode, split.peers, via,
                              split.discarded)

    def _via_supernodes(self, job: "_Job") -> Optional[str]:
        """Download through the first supernode that answers; the task id, or None
        when none does. Once one served us, a dead one is not the end: the others
        are tried for failover_s, the time a cluster needs to re-own its tasks."""
        give_up_at = None
        while True:
            for address in self.config.supernode:
                download = None
                try:
                    download = self._p2p(address, job)
                    task_id = download.run()
                    self._seeded[task_id] = download.supernode.address   # the owner, after redirects
                    self._registrations[task_id] = download.register_request
                    return task_id
                except SupernodeDown as e:
                    if isinstance(e, SupernodeFailed):
                        job.failed = e
                    if isinstance(e, (SwarmStuck, SupernodeFailed)):   # alive, but cannot deliver
                        download.supernode.leave_quietly(download.task_id, self.peer_id)
                    elif download is not None and give_up_at is None and (
                            download.task_id or download.supernode.address != address):
                        # A supernode answered (even if only to redirect us to a member
                        # that just died): the cluster will re-own the task, so wait.
                        give_up_at = self.clock() + self._failover_s(download, address)
                    log.warning("%s; trying the next supernode", e)
                except BaseException:
                    # Leave, so the supernode stops offering us as holder of a file we delete.
                    if download is not None and download.task_id:
                        download.supernode.leave_quietly(download.task_id, self.peer_id)
                    raise
                finally:
                    if download is not None:
                        download.supernode.close()
            if give_up_at is None or self.clock() >= give_up_at:
                return None
            if job.deadline is not None and self.clock() >= job.deadline:
                raise errors.DownloadTimeout("download timed out while supernodes failed over")
            if job.cancel.wait(FAILOVER_PAUSE_S):
                raise errors.Cancelled("download cancelled")

    def _failover_s(self, download: P2PDownload, address: str) -> float:
        """How long to keep trying after `download`'s supernode died: --failover, else
        CLUSTER_FAILOVER_S when others may take its tasks over, and 0 for a lone one
        (nobody will: the missing pieces come from the source at once)."""
        if self.config.failover_s is not None:
            return self.config.failover_s
        clustered = len(self.config.supernode) > 1 or download.supernode.address != address
        return CLUSTER_FAILOVER_S if clustered else 0.0

    def _p2p(self, address: str, job: "_Job") -> P2PDownload:
        supernode = SupernodeClient(address, tls=self.tls, secrets=self.secrets)
        try:
            host = self.config.advertise or supernode.local_host()
            uploader = self._ensure_uploader(host)
        except errors.DflyError:
            supernode.close()
            raise
        request = RegisterRequest(url=job.url, peer_id=self.peer_id,
                                  peer_port=self._listener.address[1], peer_host=host,
                                  headers=job.headers, filters=split_filters(job.filters),
                                  digest=job.digest.lower() if job.digest else None,
                                  identifier=job.identifier, location=self.config.location)
        storage = job.storage
        return P2PDownload(supernode, request, storage, self.config.parallel,
                           self.config.piece_timeout_s, job.deadline, job.bucket, job.sequential,
                           on_progress=job.report, on_registered=lambda tid: uploader.publish(tid, storage),
                           clock=self.clock, split=job.split, cancel=job.cancel,
                           restartable=job.restartable, fill=job.fill,
                           connect_timeout_s=self.config.connect_timeout_s, trace=job.trace)

    def _from_source(self, job: "_Job") -> None:
        """The whole file from the source; or, when P2P delivered part of it, only
        the pieces it lacks (by Range, where the source allows)."""
        split, storage = job.split, job.storage

        def counted(n: int) -> None:
            split.source += n
            if job.deadline is not None and self.clock() > job.deadline:
                total = job.storage.length or job.storage.expected_length
                raise errors.DownloadTimeout("download timed out after %s" % received(split.total, total))
            if job.cancel.is_set():
                raise errors.Cancelled("download cancelled")
            job.report(split)

        def replaced(reason: str, changed: bool) -> None:
            if changed and not job.restartable:   # a reader follows the bytes: no start over
                raise errors.SourceChanged("%s; the bytes already read are of the old content"
                                           % reason)
            log.warning("%s: fetching the whole file", reason)
            split.replaced()

        if self._uploader is not None:   # no supernode sends anyone to it any more
            self._uploader.withdraw_file(storage)
        job.trace.event("source_fallback", pieces_held=len(storage.held))
        if storage.length is None or not storage.held:
            download_from_source(job.url, job.headers, storage, self.config.piece_timeout_s,
                                 job.bucket, counted, self.clock, job.deadline,
                                 self._source_access())
            return
        held = storage.held_bytes()
        log.warning("fetching the missing %s of %s from the source (%s came through P2P)",
                    human_bytes(storage.length - held), human_bytes(storage.length), human_bytes(held))
        fill_from_source(job.url, job.headers, storage, job.fill, self.config.piece_timeout_s,
                         job.bucket, counted, replaced, self.clock, job.deadline,
                         self._source_access())

    def _source_access(self):
        """The source settings with their credentials, gathered from the environment and
        the usual files on first need (this Client is where a download is wired)."""
        if self._source_credentials is None:
            from dfly.sources.credentials import gather
            self._source_credentials = gather(self.config, os.environ)
        return source_access(self.config, self._source_credentials)

    def _ensure_uploader(self, advertised_host: str) -> UploaderApp:
        """The uploader, listening (from the first call on) on the family of the address
        this peer advertises, so the peers it is offered to can reach it."""
        with self._lock:
            if self._listener is None:
                self._uploader = UploaderApp(throttle=self.upload_bucket, secrets=self.secrets)
                address = upload_address(self.config.upload_listen, advertised_host)
                self._listener = Listener("uploader-" + self.peer_id, address, self._uploader,
                                          tls=self.tls,
                                          client_ipv6_prefix=self.config.client_ipv6_prefix).start()
            return self._uploader

    def _after_download(self, task_id: str, storage: PieceFile) -> None:
        """Keep serving the finished pieces while seeding; otherwise leave the task."""
        if not task_id:
            return
        if self.config.seed_for_s <= 0:
            address = self._seeded.pop(task_id, None)
            if self._uploader is not None:
                self._uploader.withdraw(task_id)
            if address:
                leave_quietly(address, task_id, self.peer_id, self.tls, secrets=self.secrets)

    def _discard(self, storage: PieceFile) -> None:
        if self._uploader is not None:
            self._uploader.withdraw_file(storage)
        _remove(storage.path)


def _check_digest(digest: Optional[str]) -> None:
    if digest:
        try:
            parse_digest(digest)
        except ValueError as e:
            raise errors.BadRequest(str(e))


def _progress_reporter(storage: PieceFile, progress: Optional[Progress]):
    def report(split: ByteSplit) -> None:
        if progress is not None:
            progress(split.total, storage.length or storage.expected_length, split)
    return report


def _yieldable(storage: PieceFile) -> int:
    """The verified prefix, short of the last piece: it waits for the whole-file check."""
    if storage.length is None:
        return storage.contiguous_bytes()
    return servable_end(storage.held, storage.length, storage.piece_size, 0)


def _read_in_order(storage: PieceFile, outcome: dict) -> Iterator[bytes]:
    sent = 0
    with open(storage.path, "rb") as f:
        while True:
            with storage.cond:
                storage.cond.wait_for(lambda s=sent: outcome.get("finished")
                                      or _yieldable(storage) > s, timeout=1.0)
                ready = _yieldable(storage)
                finished = outcome.get("finished")
            if finished:
                if "error" in outcome:
                    raise outcome["error"]
                ready = storage.length or 0
            f.seek(sent)
            while sent < ready:
                block = f.read(min(1 << 20, ready - sent))
                if not block:
                    break
                sent += len(block)
                yield block
            if finished:
                return


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _makedirs(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise errors.LocalIOError("cannot create %s: %s" % (path, e.strerror or e))


def _random_hex(digits: int) -> str:
    """Random hex digits, as uuid4().hex gives (without importing uuid and platform)."""
    return os.urandom((digits + 1) // 2).hex()[:digits]
