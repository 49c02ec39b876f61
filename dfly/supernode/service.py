"""What the supernode does for its callers, as plain methods over plain values.

The HTTP layer (server.py) only decodes a request, calls one of these and
encodes the answer. Each task has one fetch thread (so the source is read once
however many peers ask at once) and a scheduler guarded by the task's lock;
`schedule` long-polls so a peer hears about a new piece, a freed holder or a
failed source the moment it happens. A change wakes only the waiters it may
concern (task.py says how), and the reply says how long the call waited on
purpose (`waited_s`), so a caller can tell waiting from slowness.
"""
import dataclasses
import functools
import hmac
import ipaddress
import logging
import os
import secrets
import shutil
import threading
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional

from dfly.errors import (
    BadRequest,
    DflyError,
    Forbidden,
    Gone,
    NotFound,
    SourceDenied,
    TLSRefused,
    TooManyRequests,
)
from dfly.httpd import FileSlice
from dfly.protocol import messages, piecetoken, signing, tiers
from dfly.protocol.address import client_key, format_address, parse_host
from dfly.protocol.location import parse_location
from dfly.protocol.messages import DIGEST_MISMATCH, copy_suspect
from dfly.protocol.pieces import block_size_for, piece_range
from dfly.protocol.ratelimit import TokenBucket
from dfly.protocol.redact import redact_text, redact_url, shown_url
from dfly.protocol.sourcepolicy import SourcePolicy
from dfly.protocol.task import TASK_ID
from dfly.protocol.task import task_id as make_task_id
from dfly.sources import open_source
from dfly.sources.config import SourceCredentials, source_access
from dfly.supernode.cdn import Fetch
from dfly.supernode.client import SupernodeClient
from dfly.supernode.cluster import Membership, ReplicaStore
from dfly.supernode.config import SupernodeConfig
from dfly.supernode.dashboard import Events, count_received, piece_bytes
from dfly.supernode.eviction import CacheEntry, choose_evictions
from dfly.supernode.fetchpool import FetchPool
from dfly.supernode.metrics import SupernodeMetrics
from dfly.supernode.repair import Repairer
from dfly.supernode.scheduler import SUPERNODE, SchedulerConfig
from dfly.supernode.scrub import Scrubber
from dfly.supernode.task import DONE, FAILED, PENDING, RUNNING, Task, Waiter
from dfly.tls import TLS

log = logging.getLogger("dfly.supernode")

MAX_WAIT_S = 5.0
# Failures that are the source's: remembered for --failure-ttl. The supernode's own
# (LocalIOError: its disk; InternalError) are not: the next registration retries.
SOURCE_FAULTS = ("SourceError", "DigestMismatch", "SourceDenied")


class Supernode:
    def __init__(self, config: SupernodeConfig, data_dir: str,
                 clock: Callable[[], float] = time.monotonic,
                 source_credentials: Optional[SourceCredentials] = None):
        self.config = config
        self.clock = clock
        self.tls = TLS.from_config(config)   # members and peers are dialled with it
        self.tasks_dir = os.path.join(data_dir, "tasks")
        os.makedirs(self.tasks_dir, exist_ok=True)
        self.scheduler_config = SchedulerConfig(
            max_uploads_per_peer=config.max_uploads_per_peer,
            max_uploads_supernode=config.max_uploads,
            peer_ttl_s=config.peer_ttl_s, start_timeout_s=config.assignment_start_timeout_s,
            max_assignments_per_peer=config.max_assignments_per_peer,
            prefer_near=not config.ignore_locations, cut_through=config.cut_through,
            free_relay_slots=config.free_relay_slots, fanout=config.fanout)
        self.source_policy = SourcePolicy.parse(config.allow_source, config.deny_source,
                                                files=bool(config.source_file_root))
        # https CAs, ftp, file roots, s3; the credentials the wiring gathered (app.py)
        self.source_options = source_access(config, source_credentials)
        self.sources_denied = 0   # a counter: /v1/tasks shows it
        self.metrics = SupernodeMetrics()   # GET /metrics
        self.metrics.watch(self)
        self.bucket = (TokenBucket(config.source_rate_limit, clock())
                       if config.source_rate_limit > 0 else None)
        self._tasks: Dict[str, Task] = {}
        self._trash = os.path.join(data_dir, "trash")   # pruned folders, removed outside the lock
        # client host -> the new tasks it may still register (a bucket refilling per minute)
        self._new_task_budget: Dict[str, TokenBucket] = {}
        # Sources are fetched by at most max_source_fetches threads, shared fairly
        # between the client hosts that asked for them; more tasks queue.
        self._fetch_pool = FetchPool(config.max_source_fetches, config.max_source_fetches_per_client)
        # peer id -> [its secret, when it last proved it]: who registered an id owns it
        self._peer_secrets: Dict[str, list] = {}
        self.piece_key = secrets.token_bytes(32)   # mints the tokens for our own pieces
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._janitor_loop, name="supernode-janitor",
                                          daemon=True)]
        self.me = config.advertise or config.listen
        self.membership = self._membership(config)
        # Cluster requests are signed with wall-clock timestamps (they cross machines).
        self.wall_clock: Callable[[], float] = time.time
        self.events = Events(lambda: self.wall_clock())   # what the dashboard lists
        members = self.membership.members if self.membership else []
        self.cluster_key = signing.cluster_key(config.cluster_secret, members)
        self.verifier = signing.Verifier(self.cluster_key, members)
        self.replicas = ReplicaStore(os.path.join(data_dir, "replicas"))
        self.repairer = Repairer(self._piece_fetch, self.clock, self.tls, self._repair_token,
                                 piece_damaged=self.metrics.damaged_pieces.inc,
                                 piece_repaired=self.metrics.repaired_pieces.inc)
        self.scrubber = Scrubber(self, config.scrub_rate, self._stop)
        self._threads.append(threading.Thread(target=self.scrubber.run, name="supernode-scrub",
                                              daemon=True))
        if self.membership is not None:
            self._threads.append(threading.Thread(target=self._sync_loop, name="supernode-sync",
                                                  daemon=True))
        self.node_id = secrets.token_hex(8)   # this process in X-Dfly-Via chains (tiers)
        self.upstream = self._upstream(config, data_dir)
        if self.upstream is not None:
            self.upstream.watch(self.metrics.registry)

    def _membership(self, config: SupernodeConfig) -> Optional[Membership]:
        members = [m.strip() for value in config.cluster for m in value.split(",") if m.strip()]
        if not members:
            return None
        if self.me not in members:
            raise ValueError("this supernode's address %s (--advertise, else --listen) is not "
                             "among the --cluster members %s" % (self.me, ", ".join(members)))
        if not config.cluster_secret:   # else anyone could join and rewrite piece digests
            raise ValueError("a supernode cluster needs --cluster-secret (the same on every member)")
        if len(config.cluster_secret) < 16:
            log.warning("--cluster-secret is short: a sniffed request lets it be guessed offline; "
                        "use 32 random bytes (openssl rand -hex 32)")
        return Membership(self.me, members, config.member_dead_after_s, self.clock())

    def _upstream(self, config: SupernodeConfig, data_dir: str):
        """The upstream cluster's source (--upstream-supernode), or None."""
        if not config.upstream_supernode:
            return None
        own = [config.listen, config.advertise] + (self.membership.members if self.membership else [])
        tiers.check_upstreams(config.upstream_supernode, own)   # ValueError: exit 2
        from dfly.supernode.upstream import UpstreamSource, upstream_tls
        return UpstreamSource(config.upstream_supernode, self.node_id, data_dir,
                              upstream_tls(config), config.upstream_upload_listen,
                              config.client_ipv6_prefix)

    def _opener(self, task: Task):
        """Where a task's fetch reads its source: the upstream cluster, else the origin."""
        if self.upstream is None:
            return open_source
        return self.upstream.opener(task.via, task.digest)

    def start(self) -> "Supernode":
        if self.upstream is not None:
            self.upstream.start()
        self.repairer.start()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.scrubber.cache_changed()   # wakes its idle wait at once
        self._fetch_pool.close()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(5)
        self.repairer.stop()
        if self.upstream is not None:
            self.upstream.close()

    # calls from peers ------------------------------------------------------------
    def register(self, body: dict, client_host: str, proof: str = "") -> dict:
        """`proof`: the peer's secret, if this supernode gave it one (a first
        registration has none; its reply's `peer_secret` is then the one to send)."""
        req = messages.RegisterRequest.parse(body)
        via = tiers.take_via(req.headers)   # never sent to a source
        tiers.check_via(via, self.node_id, self.config.upstream_max_hops)   # UpstreamLoop: 508
        why = self.source_policy.check_url(req.url)
        if why is not None:
            error = SourceDenied("source %s denied by the supernode's source policy: %s"
                                 % (shown_url(req.url), why), detail=why)
            self._source_denied(client_host, req.url, error)
            raise error
        host = self._holder_host(req.peer_host, client_host)
        tid = make_task_id(req.url, req.filters, req.digest, req.identifier)
        now = self.clock()
        if self.membership is not None:
            owner = self.membership.owner(tid, now, serving_here=tid in self._active_ids())
            if owner != self.me:
                return {"redirect": owner, "task_id": tid}
        secret = self._admit(req.peer_id, proof, now)
        while True:
            task = self._task_for(tid, req, client_host, now)
            with task.cond:
                if task.pruned:   # the janitor dropped it between our two locks: again
                    continue
                task.source_offered(req.url, req.headers)
                task.via = task.via or via
                if task.state == FAILED and req.url != task.url and req.url not in task.failed_urls:
                    task.use_source(req.url, req.headers)   # a URL not tried yet: no need to wait
                self._refresh(task, now, client_host)
                task.last_access = now
                task.scheduler.peer_joined(req.peer_id, (host, req.peer_port), now,
                                           location=parse_location(req.location))
                # No wake-up: a peer joining holds nothing yet and frees no upload slot.
                reply = self._state(task)
            break
        _touch(task.folder)
        reply.update(task_id=tid, peer_id=req.peer_id, peer_secret=secret,
                     version=messages.PROTOCOL_VERSION)   # a peer of another version refuses us
        return reply

    def schedule(self, tid: str, body: dict, proof: str = "") -> dict:
        task = self._known_task(tid)
        req = messages.ScheduleRequest.parse(body)
        self._check_proof(req.peer_id, proof)
        deadline = self.clock() + min(req.wait_s, MAX_WAIT_S)
        waited = 0.0
        began = time.monotonic()
        with task.cond:
            now = self.clock()
            if not task.scheduler.peer_seen(req.peer_id, now):
                raise Gone("peer %s is not registered for task %s" % (req.peer_id, tid[:12]))
            reported_again = task.scheduler.report_call_came(req.peer_id, req.report_call)
            if reported_again or task.scheduler.repeats_answered(req.peer_id, req.call, req.heard):
                req = dataclasses.replace(req, failed=[])   # counted when that call came
            self._apply_reports(task, req, now)
            freed = task.scheduler.replies_heard(req.peer_id, req.call, req.heard)
            if freed:
                task.offered(set().union(*(task.scheduler.pieces_of(h) for h in freed)))
            waiter: Optional[Waiter] = None
            try:
                while True:
                    assignments = []
                    if task.state != FAILED:
                        assignments = task.scheduler.assign(req.peer_id, req.want, now, req.sequential)
                        if assignments and task.scheduler.config.cut_through:
                            task.offered([a.piece for a in assignments])   # relayed from it now
                                                                            # (from a peer: once begun)
                    if waiter is not None:
                        task.tried(waiter, bool(assignments))
                    left = deadline - self.clock()
                    if assignments or task.state == FAILED or left <= 0 or self._has_all(task, req.peer_id):
                        break
                    if waiter is None:
                        waiter = task.add_waiter(req.peer_id, req.want)
                    began = self.clock()
                    task.wait(waiter, left)
                    now = self.clock()
                    # On purpose until the change that woke us (or the deadline); the
                    # time to get the lock back and answer is the supernode's latency.
                    waited += max(0.0, (waiter.woken_at if waiter.woken_at is not None
                                        else min(now, deadline)) - began)
                    if req.peer_id not in task.scheduler.peers:
                        raise Gone("peer %s was forgotten" % req.peer_id)
            finally:
                if waiter is not None:
                    task.stop_waiting(waiter)
            task.scheduler.reply_made(req.peer_id, req.call, assignments, now)
            reply = self._state(task)
            wall = self.wall_clock()
            reply["pieces"] = [self._describe(task, a, req.peer_id, wall) for a in assignments]
            reply["waited_s"] = round(waited, 6)
            task.last_access = now
        self.metrics.schedule_seconds.observe(max(0.0, time.monotonic() - began - waited))
        return reply

    def heartbeat(self, tid: str, peer_id: str, proof: str = "") -> dict:
        """A seeding peer lives. The reply lists the pieces others discarded from it
        since (`check`, with their digests): it checks its copies and re-reports
        the good ones; until then they are not offered from it."""
        task = self._known_task(tid)
        self._check_proof(peer_id, proof)
        with task.cond:
            if not task.scheduler.peer_seen(peer_id, self.clock()):
                raise Gone("peer %s is not registered for task %s" % (peer_id, tid[:12]))
            # A seeder whose pieces are of another version stops offering them; the
            # pieces others discarded from it since (`check`) it checks again.
            suspects = sorted(task.suspects.pop(peer_id, ()))
            check = [{"num": n, "sha256": task.digests[n]} for n in suspects if n < len(task.digests)]
            return {"ok": True, "content_version": task.content_version, "check": check}

    def leave(self, tid: str, peer_id: str, proof: str = "") -> dict:
        task = self._known_task(tid)
        self._check_proof(peer_id, proof)
        with task.cond:
            task.scheduler.peer_left(peer_id)
            task.suspects.pop(peer_id, None)
            task.wake_peers([peer_id])
            task.offered(None)   # its upload slots elsewhere are free; what it held, others serve
        return {"ok": True}

    def piece(self, tid: str, num: int, peer_id: str = "", client_host: str = "",
              proof: str = "", token: str = "") -> FileSlice:
        """Piece `num`'s bytes, for a `token` we minted for `peer_id` (403 otherwise).
        `peer_id` frees its upload slot only with that peer's secret and from the host
        it registered (else another client could free our upload slot early in its
        name; the slot is then freed by the peer's report)."""
        task = self._known_task(tid)
        why = piecetoken.refusal(token, [self.piece_key], tid, peer_id, self.wall_clock())
        if why is not None:
            raise Forbidden(why)
        if peer_id and not self._proves(peer_id, proof):
            peer_id = ""
        with task.cond:
            if not task.is_cached(num):
                raise NotFound("piece %d of task %s is not here" % (num, tid[:12]))
            start, size = piece_range(num, task.length if task.length is not None
                                      else (num + 1) * task.piece_size, task.piece_size)
            task.served_bytes += size
            self.metrics.piece_served(size)
            addr = task.scheduler.addr_of(peer_id) if peer_id else None
            vouched = addr is not None and addr[0] == client_host
            if vouched:
                task.scheduler.supernode_started(peer_id, num, self.clock())
                if task.scheduler.config.cut_through:
                    task.offered((num,))   # that peer may relay it now: waiters for it may go
        if not vouched:
            return FileSlice(task.data_path, start, size)
        return FileSlice(task.data_path, start, size,
                         on_sent=functools.partial(self._piece_sent, task, num, peer_id),
                         on_failed=functools.partial(self._piece_not_sent, task, num, peer_id))

    def _piece_sent(self, task: Task, num: int, peer_id: str, slow: bool = False) -> None:
        """The last byte of a piece left for `peer_id` (or it reads too slowly to wait
        for): our upload slot is free now, not only when the peer reports the piece
        (a round trip later, during which our link, the swarm's bottleneck, would
        carry less)."""
        with task.cond:
            if task.scheduler.supernode_sent(peer_id, num, self.clock(), slow):
                task.offered(task.scheduler.pieces_of(SUPERNODE))

    def _piece_not_sent(self, task: Task, num: int, peer_id: str) -> None:
        """The piece could not reach `peer_id` (it died, or stopped reading): it will
        not have it, so the piece is planned again, for it and for others."""
        with task.cond:
            if task.scheduler.supernode_send_failed(peer_id, num):
                task.offered(task.scheduler.pieces_of(SUPERNODE))

    def warm(self, url: str, headers: dict, digest: Optional[str] = None,
             identifier: Optional[str] = None, filters=(), client_host: str = "") -> str:
        """Fetch `url` into the cache as the task a peer asking for it would register,
        with no peer (preheat.py); its id. OwnedElsewhere in a cluster when another
        member owns that task: the caller registers there."""
        why = self.source_policy.check_url(url)
        if why is not None:
            error = SourceDenied("source %s denied by the supernode's source policy: %s"
                                 % (shown_url(url), why), detail=why)
            self._source_denied(client_host, url, error)
            raise error
        tid = make_task_id(url, filters, digest, identifier)
        now = self.clock()
        if self.membership is not None:
            owner = self.membership.owner(tid, now, serving_here=tid in self._active_ids())
            if owner != self.me:
                raise OwnedElsewhere(owner, tid)
        wanted = messages.RegisterRequest(url=url, peer_id="preheat", peer_port=1,
                                          headers=dict(headers), digest=digest)
        while True:
            task = self._task_for(tid, wanted, client_host, now)
            with task.cond:
                if task.pruned:
                    continue
                task.source_offered(url, wanted.headers)
                if task.state == FAILED and url != task.url and url not in task.failed_urls:
                    task.use_source(url, wanted.headers)
                self._refresh(task, now, client_host)
                task.last_access = now
            return tid

    def await_task(self, tid: str, timeout_s: float, give_up: Callable[[], bool]) -> tuple:
        """(state, error) of a loaded task once it is done, failed or dropped ("gone", ""),
        `give_up()` is true, or timeout_s passed: asleep until the task changes (or
        wake_task), not polling."""
        with self._lock:
            task = self._tasks.get(tid)
        if task is None:
            return "gone", ""
        with task.cond:
            task.cond.wait_for(lambda: task.state in (DONE, FAILED) or task.pruned or give_up(),
                               timeout_s)
            if task.pruned and task.state not in (DONE, FAILED):
                return "gone", ""
            return task.state, redact_text(task.error, task.url)

    def wake_task(self, tid: str) -> None:
        """Wake await_task's callers on `tid`: they look at their give_up again."""
        with self._lock:
            task = self._tasks.get(tid)
        if task is not None:
            with task.cond:
                task.cond.notify_all()

    def task_status(self, tid: str, authorised: bool = True, peer_id: str = "",
                    proof: str = "") -> dict:
        """`authorised`: the caller may see task URLs (else only a peer of the task,
        `peer_id` proved by `proof`, sees this one's)."""
        task = self._known_task(tid)
        if not authorised and peer_id and self._proves(peer_id, proof):
            with task.cond:
                authorised = peer_id in task.scheduler.peers
        with task.cond:
            return _shown(task.summary(), task.url, authorised)

    def loaded_task(self, tid: str) -> Optional[Task]:
        with self._lock:
            return self._tasks.get(tid)

    @contextmanager
    def loading(self) -> Iterator[Dict[str, Task]]:
        """The loaded tasks, while no other is loaded (the scrub writes a meta that
        no fetch may read half-done)."""
        with self._lock:
            yield self._tasks

    def task_list(self, authorised: bool = True) -> List[dict]:
        """`authorised`: the caller may see task URLs (redacted all the same)."""
        with self._lock:
            tasks = list(self._tasks.values())
        out = []
        for task in tasks:
            with task.cond:
                out.append(_shown(task.summary(), task.url, authorised))
        return out

    # who a peer is -------------------------------------------------------------------
    def _admit(self, peer_id: str, proof: str, now: float) -> str:
        """The secret of `peer_id`: the one it holds (proved by `proof`), or a new one
        when the id is free (never seen, or silent longer than a peer is remembered).
        An id in use is not given to a caller without its secret."""
        with self._lock:
            entry = self._peer_secrets.get(peer_id)
            if entry is not None and hmac.compare_digest(proof.encode(), entry[0].encode()):
                entry[1] = now
                return entry[0]
            if entry is not None and now - entry[1] <= self.config.peer_ttl_s:
                raise Forbidden("peer id %s is registered by another peer (or this peer lost "
                                "its secret): choose another id" % peer_id)
            secret = secrets.token_hex(16)
            self._peer_secrets[peer_id] = [secret, now]
            return secret

    def _check_proof(self, peer_id: str, proof: str) -> None:
        """A call in the name of `peer_id` must carry its secret: 403 otherwise (410
        when we do not know the id: a restarted supernode; register again)."""
        with self._lock:
            entry = self._peer_secrets.get(peer_id)
            if entry is None:
                raise Gone("peer %s is not registered here" % peer_id)
            if not hmac.compare_digest(proof.encode(), entry[0].encode()):
                raise Forbidden("peer %s: missing or wrong peer secret" % peer_id)
            entry[1] = self.clock()

    def _holder_host(self, advertised: Optional[str], client_host: str) -> str:
        """Where other peers are sent to reach a registering peer: the address its
        request came from, unless it advertises that very address or we were told to
        trust what peers advertise (else anyone could make us send peers, and their
        piece requests, to any host of its choice)."""
        if not advertised:
            return client_host
        host = _peer_host(advertised)   # checked either way: a bad one is the caller's error
        if self.config.trust_peer_hosts or _same_ip(host, client_host):
            return host
        log.info("peer advertised %s but registered from %s: handed out at %s "
                 "(--trust-peer-hosts to believe peers)", host, client_host, client_host)
        return client_host

    def _holder_key(self, holder: str) -> bytes:
        """The key piece tokens for `holder` are minted with: its peer secret, ours
        for our own pieces. Read without self._lock (the caller holds a task's
        lock; one dict read is atomic)."""
        if holder == SUPERNODE:
            return self.piece_key
        entry = self._peer_secrets.get(holder)
        return piecetoken.key_of(entry[0]) if entry else b""

    def _repair_token(self, task_id: str, holder: str) -> str:
        """A token for our repairer (requester "supernode") to read `holder`'s pieces."""
        key = self._holder_key(holder)
        return piecetoken.mint(key, task_id, SUPERNODE, self.wall_clock()) if key else ""

    def _proves(self, peer_id: str, proof: str) -> bool:
        with self._lock:
            entry = self._peer_secrets.get(peer_id)
        return entry is not None and hmac.compare_digest(proof.encode(), entry[0].encode())

    def _forget_secrets(self, now: float) -> None:
        """Secrets unused for twice a peer's time to live: their peers are forgotten everywhere."""
        with self._lock:
            stale = [p for p, (_, used) in self._peer_secrets.items()
                     if now - used > 2 * self.config.peer_ttl_s]
            for peer_id in stale:
                del self._peer_secrets[peer_id]

    # internals ---------------------------------------------------------------------
    def _task_for(self, tid: str, req, client_host: str, now: float) -> Task:
        with self._lock:
            task = self._tasks.get(tid)
            if task is None:
                self._charge_new_task(client_host, now)
                task = Task(tid, req.url, req.headers, req.digest,
                            os.path.join(self.tasks_dir, tid), self.scheduler_config)
                task.clock = self.clock
                task.events = self.events
                task.last_access = now
                replica = self.replicas.get(tid) if self.membership is not None else None
                if replica is not None and replica.get("url") == req.url and replica.get("length"):
                    task.adopt(replica, self.clock())
                    self.events.record("task_taken_over", "taken over from a replica with %d piece "
                                       "digests" % len(replica["digests"]), tid)
                    log.info("task %s taken over with %d piece digests known", tid[:12],
                             len(replica["digests"]))
                self._tasks[tid] = task
                self.metrics.tasks_registered.inc()
                log.info("task %s registered for %s", tid[:12], redact_url(req.url))
            return task

    def _charge_new_task(self, client_host: str, now: float) -> None:
        """One of `client_host`'s new tasks a minute (each one a source fetch and a
        folder here); 429 beyond. Called with self._lock held."""
        limit = self.config.max_new_tasks_per_client
        if limit <= 0 or not client_host:
            return
        client = client_key(client_host, self.config.client_ipv6_prefix)   # an IPv6 host: its /64
        budget = self._new_task_budget.get(client)
        if budget is None:
            budget = self._new_task_budget[client] = TokenBucket(limit / 60.0, now, burst=limit)
        if not budget.take(1, now):
            log.warning("client %s registered more than %d new tasks a minute: refused",
                        client, limit)
            raise TooManyRequests("more than %d new tasks a minute from %s: try again later"
                                  % (limit, client))

    def _known_task(self, tid: str) -> Task:
        if not TASK_ID.match(tid):
            raise BadRequest("malformed task id")
        with self._lock:
            task = self._tasks.get(tid)
        if task is None:
            raise NotFound("no task %s" % tid[:12])
        return task

    def _refresh(self, task: Task, now: float, client_host: str) -> None:
        """Start a fetch when the task needs one (new, failed long enough ago or through
        no fault of the source's, stale)."""
        if (task.state == FAILED and task.error_kind in SOURCE_FAULTS
                and now - task.failed_at < self.config.failure_ttl_s):
            return
        stale = (task.state == DONE and not task.scheduler.peers and task.validated_at is not None
                 and now - task.validated_at > self.config.revalidate_after_s)
        if task.state == FAILED:
            task.failed_urls.clear()   # long enough ago: any URL may work again
        if task.state == FAILED or stale:
            task.reset()
        if task.state != PENDING or task.fetching:
            return
        task.fetching = True
        task.fetch_gen += 1
        fetch = Fetch(task, self.config.source_timeout_s, self.bucket, self.clock,
                      orphan_grace_s=self.config.adopt_grace_s, stop=self._stop,
                      policy=self.source_policy,
                      on_denied=lambda task, e: self._source_denied("", task.url, e),
                      sources=self.source_options, opener=self._opener(task),
                      **({"before_offer": self._copy_digest} if self.membership is not None else {}))
        self._fetch_pool.submit(client_key(client_host, self.config.client_ipv6_prefix),
                                functools.partial(self._fetch, task, fetch, client_host))

    def _fetch(self, task: Task, fetch: Fetch, client_host: str) -> None:
        read_before, began = task.source_bytes, time.monotonic()
        thread = threading.current_thread()
        idle_name, thread.name = thread.name, "fetch-" + task.task_id[:12]   # whose fetch it runs
        try:
            fetch.run()   # whatever goes wrong fails the task there: the pool's thread goes on
        finally:
            thread.name = idle_name
            self.metrics.fetch_ended(task.state if task.fetch_gen == fetch.gen else "abandoned",
                                     "Timeout" if fetch.timed_out else task.error_kind,
                                     task.source_bytes - read_before, began)
            with task.cond:
                if task.fetch_gen == fetch.gen:   # else the watchdog let another one start
                    task.fetching = False
                    if task.state == DONE:   # damage found while the task was idle: fetched again now
                        self.repairer.repair_damaged(task)
                        if task.source_bytes - read_before >= (task.length or 0):
                            self.scrubber.just_checked(task.task_id)   # hashed as it streamed in
                    elif task.state == PENDING and not self._stop.is_set():
                        # Failed at once, over to another registrant's URL (Task.fail), or
                        # a registration switched it meanwhile: fetch that one now.
                        log.info("task %s: its source failed; fetching %s instead",
                                 task.task_id[:12], redact_url(task.url))
                        self._refresh(task, self.clock(), client_host)   # same client's share
            self.scrubber.cache_changed()   # a copy new or changed on disk may be due now
            if task.state == DONE:
                self._evict()

    def _source_denied(self, client_host: str, url: str, error: SourceDenied) -> None:
        with self._lock:
            self.sources_denied += 1
            count = self.sources_denied
        self.events.record("source_denied", "%s: %s" % (redact_url(url), error.detail))
        log.warning("source denied (%d so far)%s: %s: %s", count,
                    " for client %s" % client_host if client_host else "", url[:200], error.detail)

    def _has_all(self, task: Task, peer_id: str) -> bool:
        return task.state == DONE and len(task.scheduler.peers[peer_id].held) >= task.piece_count

    def _apply_reports(self, task: Task, req, now: float) -> None:
        sched = task.scheduler
        peer = sched.peers.get(req.peer_id)
        inflight = dict(peer.inflight) if peer is not None else {}
        offered, freed = set(), set()   # pieces now servable; holders with a slot free again
        done = req.done
        doubted = [n for n in done if n < len(task.digests) and not task.vouches_for(n, n in inflight)]
        if doubted and not messages.stale(req.content_version, task.content_version):
            task.content_differs()   # the peer is told its pieces are stale; it starts over
            log.warning("task %s peer %s holds piece %d of content version %s, cut before its "
                        "digest was known here: the cut is a version of its own (%s)",
                        task.task_id[:12], req.peer_id, doubted[0], req.content_version,
                        task.content_version)
        if messages.stale(req.content_version, task.content_version):
            # Pieces of other bytes (the source changed): never offered. The reply's
            # content_version tells the peer to discard them.
            log.info("task %s peer %s reported %d pieces of content version %s, not %s: ignored",
                     task.task_id[:12], req.peer_id, len(done), req.content_version,
                     task.content_version)
            done = []
        for num in done:
            if num < len(task.digests):   # a peer can only hold a piece we have cut
                in_one_zone = sched.fetched_within_zone(req.peer_id, num)   # (forgotten once done)
                sched.piece_done(req.peer_id, num, now)
                offered.add(num)
                if num in inflight:
                    freed.add(inflight[num][0])
                    if peer is not None:
                        size = piece_bytes(task, num)
                        count_received(peer, inflight[num][0], size, now, SUPERNODE)
                        task.moved_between_peers(in_one_zone, size)
                        self.metrics.moved_between_peers(in_one_zone, size)
            elif req.content_version:   # believed once we cut it as the same version
                task.report_early(req.peer_id, num, req.content_version)
        for failure in req.failed:
            errors_before = getattr(sched.peers.get(failure.holder), "errors", 0)
            sched.piece_failed(req.peer_id, failure.num, failure.holder, now, failure.reason)
            self.metrics.piece_failed(failure.reason)
            if inflight.get(failure.num, ("", 0))[0] == failure.holder:
                freed.add(failure.holder)   # and, blacklisted, maybe no longer usable: others serve
            holder = sched.peers.get(failure.holder)
            if holder is not None and holder.errors == sched.config.max_holder_errors:
                if errors_before < holder.errors:   # reached with this report: counted once
                    self.metrics.peers_blacklisted.inc()
                log.warning("task %s peer %s blacklisted after %d errors (last: %s)",
                            task.task_id[:12], failure.holder, holder.errors, failure.reason)
                self.events.record("peer_blacklisted", "peer %s after %d errors (last: %s)"
                                   % (failure.holder, holder.errors, failure.reason[:120]), task.task_id)
            if copy_suspect(failure.reason) and failure.num < len(task.digests) \
                    and not messages.stale(req.content_version, task.content_version):
                self._copy_doubted(task, req.peer_id, failure)   # (else: checked against old digests)
        for holder in freed:
            offered |= sched.pieces_of(holder)
        if offered:
            task.offered(offered)
        if req.done or req.failed:
            # The peer's own long-poll (its coordinator; reports come on a second
            # connection) asks again: with these pieces it may now hold them all.
            task.wake_peers([req.peer_id])

    def _copy_doubted(self, task: Task, reporter: str, failure) -> None:
        """A peer says `failure.holder`'s copy of a piece came bad: withdraw that copy
        at once; the supernode checks its own now, a peer its own at its heartbeat."""
        known = failure.holder == SUPERNODE or failure.holder in task.scheduler.peers
        if failure.reason.startswith(DIGEST_MISMATCH) and known:   # (any name may be reported)
            task.discarded[failure.holder] = task.discarded.get(failure.holder, 0) + 1
            self.metrics.pieces_discarded.labels("supernode" if failure.holder == SUPERNODE
                                                 else "peer").inc()
        why = "%s, reported by peer %s" % (failure.reason[:80], reporter)
        if failure.holder == SUPERNODE:
            self.repairer.suspect(task, failure.num, why)
        elif failure.holder in task.scheduler.peers:
            task.scheduler.piece_lost(failure.holder, failure.num)
            task.suspects.setdefault(failure.holder, set()).add(failure.num)

    def _piece_fetch(self, task: Task) -> Fetch:
        """What the repairer reads single pieces from a task's source with."""
        return Fetch(task, self.config.source_timeout_s, self.bucket, self.clock, stop=self._stop,
                     sources=self.source_options)

    def _state(self, task: Task) -> dict:
        # No piece size until it is decided: a client must not cut its file by a guess.
        return {"state": task.state, "length": task.length,
                "piece_size": task.piece_size if task.geometry_known else None,
                "piece_count": task.piece_count, "content_version": task.content_version,
                "error": redact_text(task.error, task.url), "error_kind": task.error_kind,
                "validator": _validator(task.etag, task.last_modified)}

    def _describe(self, task: Task, assignment, requester: str, wall_now: float) -> dict:
        num = assignment.piece
        start = num * task.piece_size
        size = task.piece_size
        if task.length is not None:
            size = piece_range(num, task.length, task.piece_size)[1]
        piece = {"num": num, "start": start, "size": size, "sha256": task.digests[num]
                 if num < len(task.digests) else "", "holder": assignment.holder}
        blocks, block_size = task.blocks.get(num), block_size_for(task.piece_size)
        # None for a piece cut before blocks had digests (or by a version-2 supernode:
        # task.py keeps only lists that end with their piece's digest)
        if blocks and len(blocks) == -(-size // block_size):
            piece["block_size"], piece["blocks"] = block_size, blocks
        if assignment.holder != SUPERNODE:
            host, port = task.scheduler.addr_of(assignment.holder)
            piece["addr"] = format_address(host, port)
            if task.scheduler.frees_slot(requester, num):
                piece["relay"] = True   # its pace is its relay's source's: not a whole slot
        elif self.config.advertise:   # peers reach us under another address than they called
            piece["addr"] = self.config.advertise
        key = self._holder_key(assignment.holder)
        if key:
            piece["token"] = piecetoken.mint(key, task.task_id, requester, wall_now)
        return piece

    # the cluster ---------------------------------------------------------------------
    def check_member(self, call: signing.SignedCall) -> str:
        """The member that signed `call`; Forbidden for anyone else, and for a replay."""
        if self.membership is None:
            raise Forbidden("this supernode is not in a cluster")
        return self.verifier.verify(call.header, call.method, call.path, call.body, self.wall_clock())

    def _sign(self, method: str, path: str, body: bytes) -> str:
        return signing.sign(self.cluster_key, self.me, method, path, body, self.wall_clock(),
                            secrets.token_hex(16))

    def member_pinged(self, call: signing.SignedCall, body: dict) -> dict:
        """Another member says it lives and serves `active`; we answer the same."""
        signer = self.check_member(call)
        member, active = body.get("member"), body.get("active")
        if not isinstance(member, str) or not isinstance(active, list):
            raise BadRequest("ping needs 'member' and 'active'")
        if member != signer:
            raise Forbidden("a ping signed by %s in the name of %s" % (signer, member[:100]))
        self.membership.heard_from(member, [t for t in active if isinstance(t, str)], self.clock())
        return {"member": self.me, "active": self._active_ids(), "tasks": self._served_counts()}

    def _copy_digest(self, task: Task, num: int, sha256_hex: str) -> None:
        """Before piece `num` is offered to any peer, give its digest to every live
        member, so whoever takes the task over knows every piece a peer can hold."""
        with task.cond:
            replica = task.replica()
        replica["digests"] = replica["digests"][:num] + [sha256_hex]
        replica["blocks"] = replica["blocks"][:num] + [task.blocks.get(num)]
        for member in self.membership.replica_targets(task.task_id, self.clock()):
            if member == self.me:
                continue
            client = SupernodeClient(member, timeout_s=1.0, tls=self.tls)
            try:
                client.put_replica(task.task_id, replica, self._sign)
            except DflyError as e:
                log.debug("copying task %s to %s failed: %s", task.task_id[:12], member, e)
            finally:
                client.close()

    def replica_pushed(self, call: signing.SignedCall, tid: str, body: dict) -> dict:
        """A member copied a task's metadata to us, digests up to its newest piece."""
        self.check_member(call)
        if not TASK_ID.match(tid) or not isinstance(body.get("digests"), list):
            raise BadRequest("bad replica")
        body.pop("headers", None)   # credentials are never kept (an older member sent them)
        with self._lock:
            serving = tid in self._tasks
        if not serving and self.replicas.newer(tid, body):
            self.replicas.put(tid, body)
        return {"ok": True}

    def replica_of(self, call: signing.SignedCall, tid: str) -> dict:
        self.check_member(call)
        task = self._known_task(tid)
        with task.cond:
            return task.replica()

    def cluster_status(self) -> dict:
        now = self.clock()
        if self.membership is None:
            return {"me": self.me, "members": [], "tasks": []}
        active = set(self._active_ids())
        tasks = [{"task_id": tid, "owner": self.membership.owner(tid, now, tid in active)}
                 for tid in sorted(set(self._served_counts()) | set(self.replicas.ids()))]
        members = self.membership.status(now)
        for member in members:
            if member["self"]:   # the others' counts are as they told us; ours is counted here
                member["active_tasks"] = len(active)
        return {"me": self.me, "members": members, "tasks": tasks}

    def _active_ids(self) -> List[str]:
        """Tasks this member is in the middle of serving: ownership sticks to it."""
        with self._lock:
            tasks = list(self._tasks.values())
        return [t.task_id for t in tasks
                if t.state in (PENDING, RUNNING) or (t.state == DONE and t.scheduler.peers)]

    def _served_counts(self) -> Dict[str, int]:
        with self._lock:
            tasks = list(self._tasks.values())
        return {t.task_id: len(t.digests) for t in tasks if t.state != FAILED and t.length}

    def use_membership(self, membership: Membership) -> None:
        """Before start: a cluster whose members come and go (gossip mode) instead of
        the static --cluster list; signed calls are taken from its live members."""
        self.me = membership.me
        self.membership = membership
        self.verifier.members = membership   # answers `in` with the members live now
        secrets = membership.signing_secrets()
        if self.config.cluster_secret in secrets:   # derived from the gossip keys: take any of them
            self.verifier.keys = [signing.cluster_key(s, []) for s in secrets]
        self._threads.append(threading.Thread(target=self._sync_loop, name="supernode-sync",
                                              daemon=True))

    def _sync_loop(self) -> None:
        """Ping every other member; copy the metadata of the tasks they serve."""
        interval = max(0.2, self.config.member_dead_after_s / 4)
        clients: Dict[str, SupernodeClient] = {}
        alive = set(self.membership.alive(self.clock()))
        while not self._stop.wait(interval):
            alive = self._members_changed(alive)
            for member in self.membership.sync_targets():   # the list may change (gossip)
                client = clients.get(member)
                if client is None:
                    client = clients[member] = SupernodeClient(member, timeout_s=interval * 2,
                                                               tls=self.tls)
                try:
                    reply = client.ping(self.me, self._active_ids(), self._sign)
                    self.membership.heard_from(member, reply.get("active", []), self.clock())
                    self._copy_replicas(client, reply.get("tasks", {}))
                except Forbidden as e:
                    log.error("member %s refused us (%s): check --cluster-secret, the member list "
                              "and that the clocks agree", member, e)
                except TLSRefused as e:
                    log.error("member %s: %s", member, e)
                except DflyError as e:
                    log.debug("member %s did not answer: %s", member, e)
        for client in clients.values():
            client.close()

    def _members_changed(self, before: set) -> set:
        """Members that went down or came back since `before`: events (failovers)."""
        now_alive = set(self.membership.alive(self.clock()))
        for member in sorted(before - now_alive):
            self.events.record("member_down", "member %s stopped answering: its tasks move" % member)
        for member in sorted(now_alive - before):
            self.events.record("member_up", "member %s answers again" % member)
        return now_alive

    def _copy_replicas(self, client: SupernodeClient, counts: dict) -> None:
        with self._lock:
            mine = set(self._tasks)
        now = self.clock()
        for tid, count in counts.items():
            if tid in mine or not TASK_ID.match(tid) or not isinstance(count, int):
                continue
            if not self.membership.keeps_replica(tid, now):
                continue
            if self.replicas.count(tid) < count:
                replica = client.replica(tid, self._sign)
                replica.pop("headers", None)
                self.replicas.put(tid, replica)

    def _janitor_loop(self) -> None:
        while not self._stop.wait(1.0):
            now = self.clock()
            with self._lock:
                tasks = list(self._tasks.values())
            for task in tasks:
                with task.cond:
                    if self._stalled(task, now):
                        self._abandon_fetch(task, now)
                    gone = task.scheduler.expire(now)
                    for peer_id in gone:
                        task.suspects.pop(peer_id, None)
                    task.wake_peers(gone)
                    # Also the fallback for changes no event reports (an assignment
                    # released as stale, a supernode copy stalled): one baton a second.
                    task.offered(None)
                self.metrics.peers_forgotten.inc(len(gone))
                for peer_id in gone:
                    log.info("task %s peer %s forgotten (silent)", task.task_id[:12], peer_id)
                    self.events.record("peer_forgotten", "peer %s silent" % peer_id, task.task_id)
            self._forget_secrets(now)
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Drop tasks nobody uses from memory: a failed one once its failure is no
        longer remembered, any other idle for --task-idle-ttl. The folder stays when
        it holds whole pieces (a finished task's is the cache; an unfinished one's is
        resumed by Range from its last whole piece by the next registration, as after
        a restart), else it goes; kept folders are evicted by size like the cache."""
        kept = False   # an unfinished task's pieces: they count against --cache-size at once
        with self._lock:
            pruned = []
            for tid, task in list(self._tasks.items()):
                with task.cond:
                    if task.scheduler.peers or task.fetching:
                        continue
                    failed = task.state == FAILED and now - task.failed_at > self.config.failure_ttl_s
                    idle = now - task.last_access > self.config.task_idle_ttl_s
                    if not (failed or idle):
                        continue
                    task.pruned = True
                    task.cond.notify_all()   # await_task's callers: it is gone
                    del self._tasks[tid]
                    if task.state != DONE and _resumable(task):
                        kept = True
                    elif task.state != DONE:
                        pruned.append(self._to_trash(task.folder))
                log.info("task %s pruned (%s, no peers)", tid[:12], task.state)
            for host in [h for h, b in self._new_task_budget.items() if b.full(now)]:
                del self._new_task_budget[host]
        for folder in pruned:
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
        if kept:
            self._evict()

    def _to_trash(self, folder: str) -> str:
        """Move `folder` out of tasks/ at once (a new task of the same id may start
        there); the slow removal happens after, without the lock."""
        try:
            os.makedirs(self._trash, exist_ok=True)
            target = os.path.join(self._trash, "%s.%s" % (os.path.basename(folder), secrets.token_hex(4)))
            os.rename(folder, target)
            return target
        except OSError:
            return ""

    def _stalled(self, task: Task, now: float) -> bool:
        """The task's fetch got nothing for the source timeout (caller holds task.cond).
        The socket timeout catches most stalls; this also those it cannot see: an origin
        dripping its headers, a name lookup that hangs, a fetch thread stuck on a bug."""
        return (task.fetching and task.state == RUNNING
                and now - task.progress_at > self.config.source_timeout_s)

    def _abandon_fetch(self, task: Task, now: float) -> None:
        """Fail the task at once for every waiter; the stuck thread, whenever it wakes,
        changes nothing (task.fetch_gen moved on), and a later fetch may start."""
        task.fetch_gen += 1
        task.fetching = False
        message = "the source sent nothing for %gs (--source-timeout)" % self.config.source_timeout_s
        task.fail("SourceError", message, now)
        self.metrics.tasks_failed.labels("Timeout").inc()   # its thread, stuck, is not counted
        try:   # its writes go to this inode, never to a later fetch's file
            os.remove(task.data_path)
        except OSError:
            pass
        log.warning("task %s source failed: %s: %s", task.task_id[:12], message, task.url[:200])

    def _evict(self) -> None:
        """Keep the cache under its size limit, least recently used finished tasks first."""
        entries = []
        with self._lock:
            loaded = dict(self._tasks)
        for name in os.listdir(self.tasks_dir):
            folder = os.path.join(self.tasks_dir, name)
            task = loaded.get(name)
            busy = task is not None and (task.state not in (DONE, FAILED) or bool(task.scheduler.peers))
            entries.append(CacheEntry(name, _folder_size(folder), _mtime(folder), not busy))
        for name in choose_evictions(entries, self.config.cache_size):
            with self._lock:
                self._tasks.pop(name, None)
            shutil.rmtree(os.path.join(self.tasks_dir, name), ignore_errors=True)
            log.info("task %s evicted from cache", name[:12])


def _resumable(task: Task) -> bool:
    """The task's folder holds pieces cut and named by its meta (a fetch cut off by
    its source; not one whose data was removed: a stalled fetch's, a wrong digest's)."""
    return bool(task.digests) and os.path.exists(task.meta_path) and os.path.exists(task.data_path)


class OwnedElsewhere(Exception):
    """Another cluster member owns the task: `owner` is where to register it."""

    def __init__(self, owner: str, task_id: str):
        super().__init__(owner)
        self.owner = owner
        self.task_id = task_id


def _validator(etag: str, last_modified: str) -> Optional[str]:
    """What a peer sends as If-Range to get pieces of the version we cut: a strong
    ETag (a weak one may not be used there), else the date."""
    if etag and not etag.startswith("W/"):
        return etag
    return last_modified or None


def _shown(summary: dict, url: str, authorised: bool = True) -> dict:
    """A task summary: no credentials from its URL (redact.py); to a caller not
    `authorised`, no URL at all (nor the error, which names it)."""
    if not authorised:
        summary["url"] = None
        summary["error"] = "failed" if summary.get("error") else ""
        return summary
    summary["url"] = redact_url(url)
    if summary.get("error"):
        summary["error"] = redact_text(summary["error"], url)
    return summary


def _folder_size(folder: str) -> int:
    """0 for a folder that is gone: another thread's eviction or prune may remove it
    at any moment (a check before the listing would race it)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    total = 0
    for entry in entries:
        try:
            total += entry.stat().st_size
        except OSError:
            pass
    return total


def _mtime(folder: str) -> float:
    try:
        return os.stat(folder).st_mtime
    except OSError:
        return 0.0


def _peer_host(text: str) -> str:
    """The host a peer says it is reached at, checked: it is handed to other peers."""
    try:
        return parse_host(text)
    except ValueError as e:
        raise BadRequest("peer host: %s" % e)


def _same_ip(host: str, client_host: str) -> bool:
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(client_host)
    except ValueError:   # a host name: not an address we saw
        return False


def _touch(folder: str) -> None:
    try:
        os.utime(folder)
    except OSError:
        pass
