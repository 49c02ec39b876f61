"""Preheat jobs on the supernode: warm the cache before the rollout that needs it.

A job (protocol/preheat.py) runs on one of a few worker threads. An image job
reads the manifest the caller named with the caller's headers (Harbor passes
a registry token), walks an index to its per-platform manifests, checks every
manifest fetched by digest against that digest, and then hands each config
and layer blob to the supernode as the task the daemons' registry mirror
registers for it: keyed by the digest alone, so a later pull through any
daemon finds it cached. A file job hands over one URL. The tasks are fetched
by the supernode's own fetch machinery (fetch pool, source policy, rate
limit, deduplication with running downloads); this module only starts them
and waits for each to finish or fail. In a cluster, a task another member
owns is registered there, as a peer would (a short-lived pseudo-peer that
leaves at once), and watched there.

Delivery to daemons (`"scope": "all_peers"`, and `dfly publish`, which is such
a preheat): once every task of the job is cached, `deliver_to_peers` appends a
publication to the publish log (supernode/publications.py), with the blobs the
image resolved to; subscribed daemons poll for it and fetch each blob through
P2P. A job that failed publishes nothing.
"""
import hmac
import http.client
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from typing import Callable, Dict, List, Optional, Tuple

from dfly import __version__
from dfly.errors import DflyError, Forbidden, NotFound, SourceDenied, TooManyRequests
from dfly.protocol import oci, redirects
from dfly.protocol import preheat as rules
from dfly.protocol.digest import new_hasher
from dfly.protocol.messages import RegisterRequest
from dfly.protocol.preheat import Job, PreheatRequest
from dfly.protocol.publications import names_of
from dfly.protocol.redact import redact_text, redact_url
from dfly.supernode.client import SupernodeClient
from dfly.supernode.service import OwnedElsewhere, Supernode
from dfly.supernode.task import DONE, FAILED

log = logging.getLogger("dfly.supernode")

POLL_S = 0.1   # how often a worker looks at a task another member fetches


class Unauthorized(DflyError):
    """No or a wrong preheat token."""
    http_status = 401


class JobFailed(Exception):
    """The job cannot go on; the message is the registry's or origin's reason."""


class Preheater:
    def __init__(self, supernode: Supernode, token: str, workers: int = 2,
                 timeout_s: float = 1800.0, limits: rules.Limits = rules.Limits(),
                 wall_clock: Callable[[], float] = time.time):
        self.supernode = supernode
        self.token = token
        self.timeout_s = timeout_s
        self.wall_clock = wall_clock
        self.jobs = rules.Jobs(limits)
        self.publications = None   # the publish log (PublicationLog), when wired
        self._lock = threading.Lock()
        self._queue = queue.Queue()   # of Job; None tells a worker to end
        self._stop = threading.Event()
        self._watched: List[str] = []   # local tasks a worker waits for (stop wakes them)
        self._threads = [threading.Thread(target=self._work, name="preheat-%d" % i, daemon=True)
                         for i in range(max(1, workers))]

    def start(self) -> "Preheater":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for _ in self._threads:   # wakes each idle worker at once: it waits on the queue alone
            self._queue.put(None)
        with self._lock:
            watched = set(self._watched)
        for tid in watched:   # and each worker waiting for a task: it sees the stop
            self.supernode.wake_task(tid)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(5)

    # calls from the API ------------------------------------------------------------
    def check_auth(self, authorization: str) -> None:
        """Harbor sends `Authorization: Bearer <token>` (its auth mode OAuth)."""
        if not self.token:
            raise Forbidden("preheat is off on this supernode: start it with --preheat-token-file")
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                 self.token.encode()):
            raise Unauthorized("missing or wrong preheat token (Authorization: Bearer TOKEN)")

    def submit(self, request: PreheatRequest, client: str) -> Tuple[dict, bool]:
        """The new or already running (or just finished) job's views, and whether it is new."""
        with self._lock:
            try:
                job, new = self.jobs.submit(request, client, self.wall_clock())
            except rules.TooMany as e:
                raise TooManyRequests(str(e))
            view = self._views(job)
        if new:
            log.info("preheat %d queued: %s %s for %s", job.id, request.kind, redact_url(request.url),
                     client)
            self._queue.put(job)
        return view, new

    def view(self, job_id: int) -> dict:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise NotFound("no preheat %d (finished ones are forgotten after a while)" % job_id)
            return self._views(job)

    def _views(self, job: Job) -> dict:
        done, total = job.progress()
        v2 = job.v2(self.supernode.me, self.supernode.me.rpartition(":")[0].strip("[]"))
        v2["progress"] = {"done": done, "total": total}
        v2["publication"] = job.publication   # its seq in the publish log, once published
        return {"v1": job.v1(), "v2": v2, "state": job.state}

    # running -------------------------------------------------------------------------
    def _work(self) -> None:
        # No timeout: an idle worker sleeps until a job comes or stop() sends None.
        while not self._stop.is_set():
            job = self._queue.get()
            if job is None:
                return
            self._run(job)

    def _run(self, job: Job) -> None:
        with self._lock:
            job.started(self.wall_clock())
        deadline = time.monotonic() + self.timeout_s
        try:
            if job.request.kind == "image":
                self._image(job, deadline)
            else:
                self._file(job, deadline)
            self.deliver_to_peers(job)
            with self._lock:
                job.finished(self.wall_clock())
        except JobFailed as e:
            with self._lock:
                job.failed(redact_text(str(e), job.request.url), self.wall_clock())
        except Exception as e:   # a bug: the job fails with it, the worker goes on
            log.exception("preheat %d failed unexpectedly", job.id)
            with self._lock:
                job.failed("preheat failed: %s: %s" % (type(e).__name__, e), self.wall_clock())
        log.info("preheat %d %s%s", job.id, job.state, ": " + job.error if job.error else "")

    def deliver_to_peers(self, job: Job) -> None:
        """`"scope": "all_peers"`: publish what the job cached to the subscribed daemons,
        when all of it is cached (a failed job publishes nothing)."""
        req = job.request
        if req.scope != rules.SCOPE_ALL_PEERS or self.publications is None:
            return
        with self._lock:
            whole = bool(job.tasks) and all(t.state == rules.SUCCESS for t in job.tasks.values())
        if not whole:
            return
        names = names_of(req.kind, req.url)
        pub = self.publications.publish(req.kind, req.url, names, req.filters,
                                        [(b.digest, b.size, tuple(job.platforms.get(b.digest, ())))
                                         for b in job.blobs])
        with self._lock:
            job.publication = pub.seq
            job.note = "published to subscribed daemons as publication %d" % pub.seq

    def _file(self, job: Job, deadline: float) -> None:
        req = job.request
        self._warm_all(job, [(req.url, req.url, None)], deadline)

    def _image(self, job: Job, deadline: float) -> None:
        req = job.request
        ref = rules.image_ref(req.url)
        platforms: Dict[str, set] = {}
        blobs = self._blobs_of(ref, req, deadline, platforms)
        job.blobs = blobs
        job.platforms = {d: sorted(p) for d, p in platforms.items()}
        self._warm_all(job, [(b.digest, ref.blob_url(b.digest), b.digest) for b in blobs], deadline)

    def _blobs_of(self, ref: rules.ImageRef, req: PreheatRequest, deadline: float,
                  platforms: Optional[Dict[str, set]] = None) -> List[rules.Blob]:
        """The image's blobs; `platforms` gets each blob's platforms (from an index)."""
        body, media_type = self._manifest(req.url, ref.reference, req.headers, deadline)
        walked = self._walk(body, media_type, req.platforms)
        blobs = list(walked.blobs)
        platform_of = rules.manifest_platforms(body) if walked.manifests else {}
        for digest in walked.manifests:
            child, child_type = self._manifest(ref.manifest_url(digest), digest, req.headers, deadline)
            for blob in self._walk(child, child_type, ()).blobs:
                if blob not in blobs:
                    blobs.append(blob)
                if platforms is not None and platform_of.get(digest):
                    platforms.setdefault(blob.digest, set()).add(platform_of[digest])
        if len(blobs) > rules.MAX_BLOBS:
            raise JobFailed("the image names more than %d blobs" % rules.MAX_BLOBS)
        return blobs

    @staticmethod
    def _walk(body: bytes, media_type: str, platforms) -> rules.Walked:
        try:
            return rules.walk(body, media_type, platforms)
        except rules.BadManifest as e:
            raise JobFailed(str(e))

    def _manifest(self, url: str, reference: str, headers: Dict[str, str],
                  deadline: float) -> Tuple[bytes, str]:
        """The manifest at `url` and its media type; checked against `reference` when
        that is a digest."""
        sent = dict(headers, Accept=rules.ACCEPT)
        sent.setdefault("User-Agent", "dfly-supernode/" + __version__)
        timeout = max(1.0, min(self.supernode.config.source_timeout_s, deadline - time.monotonic()))
        try:
            with redirects.urlopen(urllib.request.Request(url, headers=sent), timeout=timeout,
                                   policy=self.supernode.source_policy) as reply:
                body = reply.read(rules.MAX_MANIFEST_BYTES + 1)
                media_type = reply.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            raise JobFailed("the registry answered %d %s for %s%s"
                            % (e.code, e.reason, url, _registry_reason(e)))
        except SourceDenied as e:
            raise JobFailed(str(e))
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
            raise JobFailed("cannot reach the registry for %s: %s" % (url, getattr(e, "reason", e)))
        if oci.DIGEST.match(reference):
            hasher = new_hasher(reference)
            hasher.update(body)
            if "%s:%s" % (hasher.name, hasher.hexdigest()) != reference:
                raise JobFailed("the manifest the registry sent for %s does not match its digest" % url)
        return body, media_type

    def _warm_all(self, job: Job, wanted: List[Tuple[str, str, Optional[str]]], deadline: float) -> None:
        """Start every task (key, url, digest), then wait for each to end."""
        req = job.request
        watching = []
        for key, url, digest in wanted:
            with self._lock:
                job.task_added(key, url)
            try:
                watching.append((key, self._start(job, url, digest)))
            except JobFailed as e:
                with self._lock:
                    job.task_failed(key, str(e))
        for key, watch in watching:
            why = self._outcome(watch, deadline)
            with self._lock:
                if why is None:
                    job.task_done(key)
                else:
                    job.task_failed(key, redact_text(why, req.url))
            if not isinstance(watch, str):
                watch[0].close()

    def _start(self, job: Job, url: str, digest: Optional[str]):
        """Start one task: here (its id), or at the member owning it (a client and its id)."""
        req = job.request
        try:
            return self.supernode.warm(url, req.headers, digest, digest, req.filters,
                                       client_host=job.client)
        except OwnedElsewhere as e:
            return self._start_at(e.owner, job, url, digest)
        except DflyError as e:
            raise JobFailed(str(e))

    def _start_at(self, owner: str, job: Job, url: str, digest: Optional[str]):
        client = SupernodeClient(owner, timeout_s=10.0, tls=self.supernode.tls)
        peer_id = "preheat-%d-%s" % (job.id, (digest or "file").split(":")[-1][:16])
        try:
            tid, _ = client.register(RegisterRequest(url=url, peer_id=peer_id, peer_port=1,
                                                     headers=dict(job.request.headers),
                                                     filters=list(job.request.filters),
                                                     digest=digest, identifier=digest))
            client.leave_quietly(tid, peer_id)
        except DflyError as e:
            client.close()
            raise JobFailed("member %s: %s" % (owner, e))
        return client, tid

    def _outcome(self, watch, deadline: float) -> Optional[str]:
        """None when the task finished; else why not."""
        here = isinstance(watch, str)
        if here:
            with self._lock:
                self._watched.append(watch)
        try:
            while time.monotonic() < deadline and not self._stop.is_set():
                if here:   # asleep until the task changes (or stop wakes it)
                    state, error = self.supernode.await_task(watch, deadline - time.monotonic(),
                                                             self._stop.is_set)
                else:
                    state, error = self._state(watch)
                if state == DONE:
                    return None
                if state == FAILED:
                    return error or "the fetch failed"
                if state == "gone":
                    return "the task was dropped before it finished"
                if not here:   # another member's task: asked again over HTTP
                    self._stop.wait(POLL_S)
            return "not finished within the preheat timeout"
        finally:
            if here:
                with self._lock:
                    self._watched.remove(watch)

    def _state(self, watch) -> Tuple[str, str]:
        client, tid = watch
        try:
            summary = client.task(tid)
        except DflyError as e:
            return FAILED, "member %s: %s" % (client.address, e)
        return summary.get("state", ""), summary.get("error") or ""


def _registry_reason(error: urllib.error.HTTPError) -> str:
    """The registry's own words, from its JSON error body (the OCI errors format)."""
    try:
        doc = json.loads(error.read(1 << 16).decode("utf-8"))
        first = doc["errors"][0]
        return ": %s: %s" % (first.get("code", ""), str(first.get("message", ""))[:200])
    except Exception:
        return ""
    finally:
        error.close()


def read_token(path: str) -> str:
    """The preheat token from its file ("" when no file is configured)."""
    if not path:
        return ""
    with open(path) as f:
        token = f.read().strip()
    if not token:
        raise ValueError("--preheat-token-file %s is empty" % path)
    return token
