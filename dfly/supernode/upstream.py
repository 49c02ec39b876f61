"""Tiers: a supernode cluster whose tasks come from another cluster (its
upstream, `--upstream-supernode`) instead of from the origin, so a file crosses
the link between two regions once per region, not once per host.

Strategy: the upstream is one more source behind the sources' interface
(dfly/sources): `UpstreamSource.open` returns a response in HTTP's words, and
the CDN's fetch (cdn.py) reads it as it reads an origin, cutting, hashing and
offering each piece the moment it lands, so this region's peers are served
while the fetch runs. Behind it, this supernode is a plain P2P peer of the
upstream cluster: one `dfly.Client` (the SDK `get` uses: registration, piece
workers, each piece verified against the upstream's sha256, cluster failover,
TLS) downloads the task in piece order into a temporary file, and the
response hands out the verified prefix as it grows. The client never goes to
the origin itself (no_back_source) and seeds nothing once done.

The task's validator towards the CDN is the upstream's content version (an
ETag `"dfly-cv-<version>"`). A finished copy is revalidated by registering
upstream without fetching a piece (which makes the upstream revalidate its
own copy against the origin, as any registration does), reading the content
version and leaving: the same one is a 304, and no byte crosses the link.
Range requests are not served (a resume starts over: the CDN handles a
source that ignores Range).

Failures: no upstream member reachable (nothing listens, timed out) falls
back to the origin, as Dragonfly goes back to source (logged), for a task
this region does not hold whole; one it holds whole is served as it is (the
CDN's outage mode), as when an origin cannot be reached. An
upstream that answered is believed: its source errors (404, denied, digest)
fail the task as an origin's would, and a refusal (a loop, `UpstreamLoop`)
fails it with the upstream's sentence.
"""
import errno
import logging
import os
import socket
import threading
import time
from dataclasses import fields
from typing import Callable, Dict, Optional, Sequence

from dfly import errors, options
from dfly.peer.config import PeerConfig
from dfly.peer.storage import PieceFile
from dfly.protocol.address import CLIENT_IPV6_PREFIX
from dfly.protocol.messages import RegisterRequest, TaskState
from dfly.protocol.redact import shown_url
from dfly.protocol.tiers import VIA, format_via
from dfly.protocol.urls import normalize_url
from dfly.sources import open_source
from dfly.sources.answer import http_error
from dfly.supernode.client import SupernodeClient, SupernodeDown
from dfly.tls import TLSOptions

log = logging.getLogger("dfly.supernode")

# Headers of the CDN's request that are about our copy, not the upstream's task.
LOCAL_HEADERS = ("range", "if-range", "if-none-match", "if-modified-since", "user-agent")
ETAG_PREFIX = '"dfly-cv-'
WAIT_STEP_S = 0.2   # how often a waiting reader looks again (the storage does not always notify)
JOIN_S = 10.0


class UpstreamSource:
    """This supernode as a peer of its upstream cluster; `opener(...)` is the
    per-task `open_source` the CDN's fetch uses."""

    def __init__(self, addresses: Sequence[str], node_id: str, data_dir: str, tls: Dict[str, str],
                 upload_listen: str = "0.0.0.0:0", client_ipv6_prefix: int = CLIENT_IPV6_PREFIX):
        self.addresses = list(addresses)
        self.node_id = node_id
        self.folder = os.path.join(data_dir, "upstream")
        os.makedirs(self.folder, exist_ok=True)
        for name in os.listdir(self.folder):   # pulls cut short by a crash: nobody reads them
            _remove(os.path.join(self.folder, name))
        config = options.build(PeerConfig, None, None, supernode=self.addresses,
                               data_dir=self.folder, seed_for_s=0, no_back_source=True,
                               upload_listen=upload_listen, client_ipv6_prefix=client_ipv6_prefix,
                               **tls)
        from dfly.client import Client  # the SDK: loaded only where tiers are used
        self.client = Client(config=config)
        self.fetched_bytes = 0   # what came over the link (a counter for tests and logs)
        self.fallbacks = 0       # times no upstream answered and the origin was used
        self._lock = threading.Lock()

    def start(self) -> None:
        """Listen for the upstream's peers now when the upload address names a host (a
        bad --upstream-upload-listen is an error at start, not at the first pull)."""
        self.client.claim_upload_address()

    def watch(self, registry) -> None:
        """Its counters in the supernode's metrics (docs/METRICS.md), read at scrape time."""
        registry.counter("dfly_supernode_upstream_bytes_total",
                         "Bytes fetched from the upstream supernode cluster (--upstream-supernode)",
                         read=lambda: {(): self.fetched_bytes})
        registry.counter("dfly_supernode_upstream_fallbacks_total",
                         "Fetches that went to the origin because no upstream supernode answered",
                         read=lambda: {(): self.fallbacks})

    def counted(self, nbytes: int) -> None:
        with self._lock:
            self.fetched_bytes += nbytes

    def opener(self, via: Sequence[str], digest: Optional[str]) -> Callable:
        """The source opener for one task registered through `via` (the chain it came with)."""
        chain = tuple(via) + (self.node_id,)

        def open_(url: str, headers: Optional[Dict[str, str]] = None, timeout_s: float = 30.0,
                  policy=None, options=None):
            return self.open(url, dict(headers or {}), timeout_s, policy, options, chain, digest)
        return open_

    def open(self, url: str, headers: Dict[str, str], timeout_s: float, policy, source_options,
             chain: Sequence[str], digest: Optional[str]):
        upstream_headers = {k: v for k, v in headers.items() if k.lower() not in LOCAL_HEADERS}
        upstream_headers[VIA] = format_via(chain)
        ours = _header(headers, "If-None-Match")
        if ours.startswith(ETAG_PREFIX):   # a revalidation: ask before moving any byte
            version = self._upstream_version(url, upstream_headers, digest, timeout_s)
            if version is not None and ours == ETAG_PREFIX + version + '"':
                raise http_error(url, 304, "Not Modified (the upstream holds the same content)",
                                 {"ETag": ours})
        pull = _Pull(self, url, upstream_headers, digest, timeout_s)
        try:
            etag = pull.wait_for_content()
        except errors.P2PUnavailable as e:
            pull.close()
            if ours.startswith(ETAG_PREFIX):
                # A finished copy from the upstream, which cannot be reached: served as it
                # is (the CDN's outage mode), as for an origin that cannot be reached; the
                # origin would cost a copy over the link that is likely down anyway.
                raise ConnectionRefusedError(errno.ECONNREFUSED, "no upstream supernode "
                                             "answered (%s)" % e)
            with self._lock:
                self.fallbacks += 1
            log.warning("no upstream supernode answered for %s (%s): fetching from the origin",
                        shown_url(url), e)
            kwargs = {"policy": policy}
            if source_options is not None:
                kwargs["options"] = source_options
            # Our validators are the upstream's content version: the origin knows none of
            # them, so it is asked for the whole file.
            plain = {k: v for k, v in headers.items() if ETAG_PREFIX not in v
                     and k.lower() not in ("range", "if-range", "if-modified-since")}
            return open_source(url, plain, timeout_s, **kwargs)
        except BaseException:
            pull.close()
            raise
        if etag is not None and _header(headers, "If-None-Match") == etag:
            pull.close()
            raise http_error(url, 304, "Not Modified (the upstream holds the same content)",
                             {"ETag": etag})
        return pull

    def _upstream_version(self, url: str, headers: Dict[str, str], digest: Optional[str],
                          timeout_s: float) -> Optional[str]:
        """The upstream task's content version, learnt by registering without fetching a
        piece (the upstream revalidates its own copy, as for any registration) and
        leaving again; None when it cannot be learnt so (the pull then decides);
        ConnectionRefusedError (unreachable) when no member answers."""
        uploader = self.client.uploader_address
        if uploader is None:   # a wildcard upload address starts the uploader at the first pull
            return None
        request = RegisterRequest(url=normalize_url(url), peer_id=self.client.peer_id,
                                  peer_port=uploader[1], headers=dict(headers), digest=digest)
        # Within the CDN's watchdog (timeout_s without progress), every member tried.
        each_s = min(15.0, max(1.0, timeout_s / (2 * len(self.addresses))))
        down = []
        for address in self.addresses:
            supernode = SupernodeClient(address, timeout_s=each_s,
                                        tls=self.client.tls, secrets=self.client.secrets)
            try:
                task_id, state = supernode.register(request)
                try:
                    return self._await_version(supernode, task_id, state, timeout_s)
                finally:
                    supernode.leave_quietly(task_id, self.client.peer_id)
            except SupernodeDown as e:
                down.append(str(e))
            except errors.DflyError:
                return None
            finally:
                supernode.close()
        # No member answered: the CDN serves the finished copy as it is (outage mode).
        raise ConnectionRefusedError(errno.ECONNREFUSED, "no upstream supernode answered (%s)"
                                     % "; ".join(down)[:500])

    def _await_version(self, supernode: SupernodeClient, task_id: str, state: TaskState,
                       timeout_s: float) -> Optional[str]:
        deadline = time.monotonic() + timeout_s
        pause = threading.Event()
        while not state.content_version and state.state != "failed":
            if time.monotonic() >= deadline:
                return None
            pause.wait(WAIT_STEP_S)
            state = TaskState.parse(supernode.task(task_id))
        return state.content_version or None

    def close(self) -> None:
        self.client.close()


def upstream_tls(config) -> Dict[str, str]:
    """The TLS settings the upstream is dialled with: the supernode's own, or, with
    any --upstream-tls-* given, those (the other region's CA, a certificate it
    accepts), the versions and ciphers kept. ValueError for a cert without a key."""
    tls = {f.name: getattr(config, f.name) for f in fields(TLSOptions)}
    if not (config.upstream_tls_ca or config.upstream_tls_cert or config.upstream_tls_key):
        return tls
    if bool(config.upstream_tls_cert) != bool(config.upstream_tls_key):
        raise ValueError("--upstream-tls-cert and --upstream-tls-key go together")
    tls.update(tls_ca=config.upstream_tls_ca, tls_cert=config.upstream_tls_cert,
               tls_key=config.upstream_tls_key, tls_client_auth="none", tls_server_name="")
    return tls


class _Pull:
    """One task downloaded from the upstream, read in order while it arrives:
    the response the CDN reads (status, headers, read, read1, close)."""

    def __init__(self, upstream: UpstreamSource, url: str, headers: Dict[str, str],
                 digest: Optional[str], timeout_s: float):
        self.upstream = upstream
        self.url = url
        self.timeout_s = timeout_s
        self.status = self.code = 200
        self.headers: Dict[str, str] = {}
        self.cancel = threading.Event()
        self.target = os.path.join(upstream.folder, os.urandom(8).hex() + ".bin")
        self.storage: Optional[PieceFile] = None
        self.reader = None
        self.sent = 0
        self.error: Optional[BaseException] = None
        self.finished = False
        self.ready = threading.Condition()
        self.thread = threading.Thread(target=self._run, args=(url, headers, digest),
                                       name="upstream-" + os.path.basename(self.target)[:8],
                                       daemon=True)
        self.thread.start()

    # the download's thread -----------------------------------------------------------
    def _run(self, url: str, headers: Dict[str, str], digest: Optional[str]) -> None:
        try:
            self.upstream.client.download(url, self.target, digest=digest, headers=headers,
                                          sequential=True, on_storage=self._got_storage,
                                          cancel=self.cancel)
        except BaseException as e:   # handed to the reader: it fails the task with it
            self.error = e
        finally:
            with self.ready:
                self.finished = True
                self.ready.notify_all()

    def _got_storage(self, storage: PieceFile) -> None:
        reader = open(storage.path, "rb")
        with self.ready:
            self.storage, self.reader = storage, reader
            self.ready.notify_all()

    # the CDN's side ------------------------------------------------------------------
    def wait_for_content(self) -> Optional[str]:
        """Block until the upstream said what the task is (length, piece size, content
        version) or the download ended; set the headers; the ETag (None: not known)."""
        deadline = time.monotonic() + self.timeout_s
        with self.ready:
            while not (self.finished or self._described()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("the upstream supernode said nothing of the task in %.0fs"
                                         % self.timeout_s)
                self.ready.wait(min(WAIT_STEP_S, left))
        if self.finished and self.error is not None:
            raise _as_source_error(self.error, self.upstream.addresses)
        storage = self.storage
        etag = None
        if storage is not None and storage.content_version:
            etag = ETAG_PREFIX + storage.content_version + '"'
            self.headers["ETag"] = etag
        if storage is not None and storage.length is not None:
            self.headers["Content-Length"] = str(storage.length)
        return etag

    def _described(self) -> bool:
        storage = self.storage
        # An upstream too old to name a content version: its first piece says enough.
        return bool(storage is not None and storage.piece_size
                    and (storage.content_version or storage.held))

    def read(self, size: int = -1) -> bytes:
        return self.read1(size)

    def read1(self, size: int = -1) -> bytes:
        """What is verified past what was read, at most `size`; b"" at the end."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            with self.ready:
                storage = self.storage
                done = self.finished
                ready = storage.contiguous_bytes() if storage is not None else 0
                if done and self.error is None and storage is not None:
                    ready = storage.length or ready
            if done and self.error is not None:
                raise _as_source_error(self.error, self.upstream.addresses)
            if ready > self.sent:
                want = ready - self.sent if size < 0 else min(size, ready - self.sent)
                self.reader.seek(self.sent)
                block = self.reader.read(want)
                self.sent += len(block)
                self.upstream.counted(len(block))
                return block
            if done:
                return b""
            if time.monotonic() >= deadline:
                raise socket.timeout("no piece came from the upstream supernode in %.0fs"
                                     % self.timeout_s)
            self._wait_for_more(storage)

    def _wait_for_more(self, storage: Optional[PieceFile]) -> None:
        """Until a piece is held past what was read (storage.cond is notified then), or
        a while: the download's end notifies `ready`, not the storage."""
        if storage is None:
            with self.ready:
                if not self.finished:
                    self.ready.wait(WAIT_STEP_S)
            return
        with storage.cond:
            if storage.contiguous_bytes() <= self.sent and not self.finished:
                storage.cond.wait(WAIT_STEP_S)

    def getcode(self) -> int:
        return self.status

    def geturl(self) -> str:
        return self.url

    def close(self) -> None:
        """Stop the download (if still running) and remove its file."""
        self.cancel.set()
        self.thread.join(JOIN_S)
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        _remove(self.target)
        if self.storage is not None:
            _remove(self.storage.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _as_source_error(error: BaseException, addresses: Sequence[str]) -> BaseException:
    """What the CDN fails the task with: the upstream's source faults as they are
    (an origin's would be the same), anything else as one SourceError naming it."""
    if isinstance(error, (errors.SourceError, errors.SourceDenied, errors.DigestMismatch)):
        return error
    if isinstance(error, errors.P2PUnavailable):
        return error
    return errors.SourceError("upstream supernode %s: %s" % (", ".join(addresses), error))


def _header(headers: Dict[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
