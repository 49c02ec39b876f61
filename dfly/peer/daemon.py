"""`dfly daemon`: the long-running peer on each host, and the one place it is wired.

One listener (default 127.0.0.1:65001) serves the registry mirror (/v2/...),
the HTTP proxy (absolute-URL requests and CONNECT) and the daemon's own API
(/healthz, /v1/stats, and /v1/downloads for `dfly get`, which must show the
token the daemon writes at start to DATA_DIR/daemon/handoff.token, readable
by its user only: protocol/handoff.py). Downloads go through one
dfly.Client, so the daemon is one peer with one uploader: every file it
fetched stays served to other peers while it is in the cache, and a heartbeat
keeps the supernodes offering it; what a supernode forgot (it restarted, or
answers Gone), and what the cache held before this daemon restarted, is
announced again (seeds.py keeps how). Host-wide token buckets cap download and
upload rates across every task at once. A janitor thread heartbeats and cleans
the cache by age; size is enforced after every fill.

A cached file found damaged (a piece peers discarded from us that a heartbeat
reply names and that fails our own check, or the background scrub: scrub.py)
is repaired on a fill of its own: the supernode is left, the good pieces
announced again, and only the bad ones fetched again through P2P (peers, the
supernode) and written in place; requests meanwhile follow that fill as they
follow any other. When that cannot be done (no piece digests, no supernode),
the file is deleted and fetched again whole through P2P.

When a P2P download fails because the supernode could not read the source
(say a registry token it was given expired), the daemon fetches the file
straight from the source with the requesting client's own credentials, so a
failure stays the source's and is never cached.
"""
import functools
import ipaddress
import logging
import os
import secrets
import shutil
import threading
import time
import uuid
from dataclasses import replace
from typing import Dict, List, Optional, Tuple

from dfly import __version__, dashboard_page, datadir, errors
from dfly.auth import check_ops_access, read_ops_token
from dfly.client import Client, DownloadResult
from dfly.errors import BadRequest, CannotListen, NotFound
from dfly.gossip.cluster import GossipMembership, cluster_secret
from dfly.gossip.node import member_from_config, resolve_joins
from dfly.httpd import Listener, Response, compile_routes, match_route
from dfly.lifecycle import catch_signals, log_to, serve_until_signalled
from dfly.metrics import http_response
from dfly.peer import daemon_dashboard
from dfly.peer import output as out_rules
from dfly.peer.cache import Cache
from dfly.peer.config import PeerConfig
from dfly.peer.daemon_config import DaemonConfig
from dfly.peer.daemon_metrics import DaemonMetrics, counted
from dfly.peer.filling import Filling
from dfly.peer.front import BodyReader, FrontHandler, FrontRequest
from dfly.peer.imported import ImportedImages
from dfly.peer.mirrors import Mirrors, parse_mirror_registry
from dfly.peer.outage import OutageMemory
from dfly.peer.progress import human_duration
from dfly.peer.proxy import HttpProxy
from dfly.peer.registry import RegistryMirror, oci_error
from dfly.peer.scrub import CacheScrubber
from dfly.peer.seeds import Seed, SeedBook
from dfly.peer.subscriber import Subscriber
from dfly.peer.tokens import BearerTokens
from dfly.peer.upstream import Upstream
from dfly.protocol import handoff
from dfly.protocol.address import format_address, loopback_for, parse_address
from dfly.protocol.handoff import HandoffRequest
from dfly.protocol.messages import ScheduleRequest, stale
from dfly.protocol.pieces import piece_count, piece_range
from dfly.protocol.proxyrules import parse_rules
from dfly.protocol.ratelimit import TokenBucket
from dfly.protocol.redirects import SOURCE_FETCH_HEADER
from dfly.protocol.task import split_filters, task_id
from dfly.protocol.units import received
from dfly.scrub import piece_is_good
from dfly.supernode.app import RunningSupernode
from dfly.supernode.client import SupernodeClient, SupernodeDown
from dfly.supernode.config import SupernodeConfig
from dfly.tls import TLS, options_of

log = logging.getLogger("dfly.daemon")

DEFAULT_PORT = 65001
CLEANUP_EVERY_S = 60.0
MAX_ANNOUNCE_BACKOFF_S = 600.0
JOIN_WAIT_S = 5.0   # gossip mode: how long a restart's offers wait for the others' view


# The daemon's own API; /v2/... (the mirror) and absolute URLs (the proxy) are routed before.
API_ROUTES = compile_routes([
    ("GET", r"/dashboard", "dashboard"),
    ("GET", r"/v1/dashboard", "dashboard"),
    ("GET", r"/metrics", "metrics"),
    ("GET", r"/healthz", "healthz"),
    ("GET", r"/v1/stats", "stats"),
    ("GET", r"/v1/members", "members"),
    ("POST", r"/v1/downloads", "downloads"),
])


class DaemonApp:
    """Routes the front listener's requests to the mirror, the proxy or the API."""

    def __init__(self, daemon: "RunningDaemon"):
        self.daemon = daemon
        self.stopping = daemon.stopping

    def proxy(self, request: FrontRequest, body: Optional[BodyReader]) -> Response:
        counts = self.daemon.metrics
        return self._counted("proxy", request, lambda: counts.served(
            counts.proxy_requests, (counts.proxy_action(self.daemon.proxy.rules, request),),
            lambda: self.daemon.proxy.handle(request, body)))

    def route(self, request: FrontRequest) -> Response:
        path = request.path
        if path == "/v2" or path.startswith("/v2/"):
            mirror, request, name = self.daemon.mirrors.pick(request)
            if mirror is None:
                return oci_error(404, "UNSUPPORTED", "this daemon mirrors no registry named %s "
                                 "(--mirror-registry)" % name[:200] if name
                                 else "this daemon mirrors no registry")
            counts = self.daemon.metrics
            return self._counted("mirror", request, lambda: counts.served(
                counts.mirror_requests, (), lambda: mirror.handle(request)))
        name, _ = match_route(API_ROUTES, request)   # 405 with Allow for a method a path lacks
        return getattr(self, name)(request)

    def metrics(self, request: FrontRequest) -> Response:
        ops_view(request, self.daemon.ops_token)
        return http_response(self.daemon.metrics.registry)

    def healthz(self, request: FrontRequest) -> Response:
        return Response.text("ok\n")

    def stats(self, request: FrontRequest) -> Response:
        response = Response.json(self.daemon.stats())
        challenge = request.headers.get(handoff.CHALLENGE_HEADER)
        if challenge and len(challenge) <= handoff.MAX_CHALLENGE_LEN:
            response.headers[handoff.PROOF_HEADER] = handoff.proof(self.daemon.handoff_token,
                                                                   challenge)
        return response

    def members(self, request: FrontRequest) -> Response:
        if self.daemon.gossip is None:
            raise NotFound("this daemon is not in gossip mode (--gossip)")
        return Response.json({"me": self.daemon.gossip.swim.name,
                              "members": self.daemon.gossip.members()})

    def downloads(self, request: FrontRequest) -> Response:
        if not _loopback(request.client[0]):
            raise errors.Forbidden("downloads are handed over only by clients on this host")
        handoff.check_handoff(request.headers, self.daemon.handoff_token)
        return Response.json(self.daemon.download_for(request.json()))

    def _counted(self, kind: str, request: FrontRequest, answer) -> Response:
        """Mirror and proxy traffic, counted for the dashboard (target redacted there)."""
        try:
            response = answer()
        except errors.DflyError as e:
            self.daemon.traffic.answered(kind, request.method, request.target, e.http_status)
            raise
        self.daemon.traffic.answered(kind, request.method, request.target, response.status)
        return response

    def dashboard(self, request: FrontRequest) -> Response:
        ops_view(request, self.daemon.ops_token)   # read-only: the page, or its feed
        if request.path.rstrip("/") == "/dashboard":
            return Response(200, dashboard_page.DAEMON_PAGE.encode(), dict(dashboard_page.HEADERS))
        # a dfly program fetching a source (a supernode told to fetch this) is no operator
        authorised = _loopback(request.client[0]) and request.headers.get(SOURCE_FETCH_HEADER) is None
        return Response.json(daemon_dashboard.feed(self.daemon, authorised=authorised))


def ops_view(request: FrontRequest, ops_token: str) -> None:
    """Who may see the daemon's operations views (dashboard, metrics): the one place to
    check it. Open on the plain listener unless --ops-token-file (dfly/auth.py)."""
    check_ops_access(request.headers, ops_token)


class RunningDaemon:
    """A started daemon; `address` is where its front listener is (port 0 resolved)."""

    def __init__(self, config: DaemonConfig, data_dir: str):
        self.config = config
        self.data_dir = data_dir
        self.stopping = threading.Event()
        self.ops_token = read_ops_token(config.ops_token_file)   # ValueError: exit 2
        self.metrics = DaemonMetrics()   # GET /metrics
        now = time.monotonic()
        self.download_bucket = (TokenBucket(config.total_rate_limit, now)
                                if config.total_rate_limit > 0 else None)
        self.upload_bucket = (TokenBucket(config.upload_rate_limit, now)
                              if config.upload_rate_limit > 0 else None)
        self.gossip = self.scheduler = None
        # before anything reads the data dir: a second daemon on it stops here (exit 2)
        self.data_lock = datadir.hold(data_dir, "daemon", "dfly daemon")
        try:
            if config.gossip:
                self.gossip, self.scheduler = self._gossip_mode(config, data_dir)
            self._wire(config, data_dir)
        except BaseException:   # a taken --listen, say: the gossip sockets must not linger
            self._stop_gossip()
            self.data_lock.release()
            raise

    def _wire(self, config: DaemonConfig, data_dir: str) -> None:
        supernodes = [self.scheduler.service.me] if self.scheduler else list(config.supernode)
        peer_config = PeerConfig(supernode=supernodes, data_dir=data_dir,
                                 seed_for_s=max(config.heartbeat_s, 1.0), advertise=config.advertise,
                                 upload_listen=config.upload_listen, parallel=config.parallel,
                                 piece_timeout_s=config.piece_timeout_s,
                                 connect_timeout_s=config.connect_timeout_s,
                                 location=config.location,
                                 timeout_s=config.fetch_timeout_s,
                                 client_ipv6_prefix=config.client_ipv6_prefix, **options_of(config))
        self.p2p = Client(config=peer_config, download_bucket=self.download_bucket,
                          upload_bucket=self.upload_bucket)
        self.direct = Client(config=replace(peer_config, supernode=[], seed_for_s=0),
                             download_bucket=self.download_bucket)
        self.cache = Cache(os.path.join(data_dir, "daemon", "cache"), config.cache_size,
                           config.cache_max_age_s, on_evict=self._evicted, on_stored=self._stored)
        self.upstream = Upstream(config.upstream_timeout_s, config.insecure_upstream)
        self.mirror = (RegistryMirror(config.registry_mirror, self.upstream, self.cache, self.fetch,
                                      config.fetch_timeout_s,
                                      BearerTokens(self.upstream, config.registry_mirror.startswith("http:")),
                                      OutageMemory(config.outage_access_ttl_s),
                                      ImportedImages.in_data_dir(data_dir))
                       if config.registry_mirror else None)
        self.mirrors = Mirrors(self.mirror, config.registry_mirror,
                               {name: self._mirror_of(url) for name, url
                                in map(parse_mirror_registry, config.mirror_registry)})
        self.proxy = HttpProxy(parse_rules(config.proxy_rule), self.upstream, self.cache,
                               functools.partial(self.fetch, fallback=False),
                               config.fetch_timeout_s, config.proxy_fresh_for_s,
                               config.upstream_timeout_s)
        self.seeds = SeedBook(os.path.join(data_dir, "daemon", "seeds"))
        self._lock = threading.Lock()
        self._task_of: Dict[str, str] = {}   # cache key -> task id it is seeded as
        self._unannounced: Dict[str, Tuple[float, float]] = {}   # key -> (next try, backoff)
        self._totals = {"source": 0, "supernode": 0, "peers": 0, "downloads": 0, "fallbacks": 0,
                        "announced": 0, "damaged_pieces": 0, "repaired_pieces": 0, "refetched": 0}
        self._repairing = set()   # cache keys being fetched again after damage
        self.traffic = daemon_dashboard.Traffic()   # mirror and proxy requests, for the dashboard
        self.metrics.watch(self)
        if config.tls_front and not config.tls_cert:
            raise ValueError("--tls-front needs --tls-cert and --tls-key")
        self.handoff_token = secrets.token_hex(32)
        self.handoff_token_path = os.path.join(data_dir, handoff.TOKEN_FILE)
        self.listener = Listener("daemon-http", parse_address(config.listen, DEFAULT_PORT),
                                 DaemonApp(self), config.max_connections, handler=FrontHandler,
                                 tls=self.p2p.tls if config.tls_front else None,
                                 max_connections_per_client=config.max_connections_per_client,
                                 client_ipv6_prefix=config.client_ipv6_prefix)
        self.proxy.own_port = self.listener.address[1]
        if self.gossip is not None:
            self.gossip.swim.me.meta["api"] = self.address
        self._janitor = threading.Thread(target=self._janitor_loop, name="daemon-janitor", daemon=True)
        self.scrubber = CacheScrubber(self, config.scrub_rate, self.stopping)
        self._scrub_thread = threading.Thread(target=self.scrubber.run, name="daemon-scrub", daemon=True)
        self.subscriber = self._subscriber(config)

    def _gossip_mode(self, config: DaemonConfig, data_dir: str):
        """No supernode: a gossip member, and a scheduler in this process that the
        other members' schedulers form a cluster with (dfly/gossip/cluster.py)."""
        node = member_from_config(config, parse_address(config.listen, DEFAULT_PORT), {"v": __version__},
                                  TLS.from_config(config))
        scheduler_config = SupernodeConfig(listen=format_address(node.bind_host, 0),
                                           cluster_secret=cluster_secret(node.keyring),
                                           member_dead_after_s=8.0,
                                           client_ipv6_prefix=config.client_ipv6_prefix,
                                           **options_of(config))
        scheduler = RunningSupernode(scheduler_config, os.path.join(data_dir, "scheduler"), cluster_for=(
            lambda port: GossipMembership(format_address(node.address[0], port), node, time.monotonic())))
        node.swim.me.meta["sn"] = scheduler.service.me
        return node, scheduler

    def _stop_gossip(self) -> None:
        if self.gossip is not None:
            self.gossip.stop()   # a goodbye: the others mark us left at once, not dead later
            self.scheduler.stop()

    def _subscriber(self, config: DaemonConfig) -> Optional[Subscriber]:
        """--subscribe: fetch what is published on those topics (subscriber.py)."""
        if not config.subscribe:
            return None
        try:   # a start-up error (exit 2): the listener bound already is let go
            if not config.supernode:
                raise ValueError("--subscribe needs --supernode: publications come from the supernodes")
            try:
                return Subscriber(self, config.subscribe, config.subscribe_concurrency,
                                  config.subscribe_jitter_s, config.subscribe_poll_s,
                                  platforms=config.subscribe_platform)
            except BadRequest as e:
                raise ValueError("--subscribe: %s" % e)
        except ValueError:
            self.listener.stop()
            raise

    def start(self) -> "RunningDaemon":
        try:   # a taken --upload-listen port is a start-up error, as a taken --listen is
            self.p2p.claim_upload_address()
        except CannotListen:
            self.listener.stop()
            self._stop_gossip()
            self.data_lock.release()
            raise
        write_secret(self.handoff_token_path, self.handoff_token)
        self.listener.start()
        if self.gossip is not None:
            self.gossip.start(resolve_joins(self.config.join))
        self._janitor.start()
        self._scrub_thread.start()
        if self.subscriber is not None:
            self.subscriber.start()
        return self

    @property
    def address(self) -> str:
        host, port = self.listener.address
        return format_address(loopback_for(host), port)

    def hangup(self) -> None:
        """SIGHUP: load the TLS certificate and key again (for new connections)."""
        for client in (self.p2p, self.direct):
            if client.tls is not None:
                client.tls.reload()

    def stop(self) -> None:
        self.stopping.set()
        self.scrubber.cache_changed()   # wakes its idle wait at once
        self._stop_gossip()
        if self.subscriber is not None:
            self.subscriber.interrupt()
        self.cache.close()   # ends the subscription's fetches in flight too
        if self.subscriber is not None:
            self.subscriber.stop()
        self.listener.stop()
        try:   # a token nobody answers to must not linger
            os.remove(self.handoff_token_path)
        except OSError:
            pass
        if self._janitor.is_alive():
            self._janitor.join(10)
        if self._scrub_thread.is_alive():
            self._scrub_thread.join(10)
        self.p2p.close()
        self.direct.close()
        self.data_lock.release()   # last: the data dir is left alone from here

    # downloads ---------------------------------------------------------------------------
    @counted
    def fetch(self, url: str, path: str, digest: Optional[str] = None,
              headers: Optional[Dict[str, str]] = None, identifier: Optional[str] = None,
              filters=(), fallback: bool = True, filling: Optional[Filling] = None,
              sequential: bool = True) -> DownloadResult:
        """Download `url` to `path` through P2P, verified; straight from the source if the
        supernode could not read it (and `fallback`). Keeps the file seeded while it is cached.
        With a `filling`, readers may follow the file (pieces in file order if `sequential`)."""
        written = []

        def on_storage(storage) -> None:
            written.append(storage)
            if filling is not None:
                filling.publish(storage)

        follow = {"on_storage": on_storage}
        if filling is not None:
            follow.update(sequential=sequential, cancel=filling.cancel, progress=filling.progressed)
        try:
            result = self.p2p.download(url, path, digest=digest, headers=headers, filters=filters,
                                       identifier=identifier, **follow)
        except errors.SourceError as e:
            if not self.config.supernode or not fallback:
                raise
            log.warning("P2P download of %s failed (%s); fetching it from the source", url[:200], e)
            result = self.direct.download(url, path, digest=digest, headers=headers, **follow)
            with self._lock:
                self._totals["fallbacks"] += 1
        key = os.path.basename(path)
        if result.task_id and written and written[-1].piece_size:
            self.seeds.put(key, Seed(url, written[-1].piece_size, digest, identifier, list(filters),
                                     written[-1].content_version, _piece_digests(written[-1])))
        with self._lock:
            if result.task_id:
                self._task_of[key] = result.task_id
            self._totals["source"] += result.bytes_from_source
            self._totals["supernode"] += result.bytes_from_supernode
            self._totals["peers"] += result.bytes_from_peers
            self._totals["downloads"] += 1
        return result

    def download_for(self, body: dict) -> dict:
        """`dfly get` handed its download over (the caller checked its token): fetch into the
        cache (shared with any other request for the same task), then copy to the output."""
        req = HandoffRequest.parse(body)
        check_output(req.output)
        key = "task-" + task_id(req.url, split_filters(req.filters), req.digest, req.identifier)
        started = time.monotonic()
        filled: Dict[str, DownloadResult] = {}

        def fill(into: str, filling: Filling) -> None:
            filled["result"] = self.fetch(req.url, into, digest=req.digest, headers=req.headers,
                                          identifier=req.identifier, filters=req.filters,
                                          filling=filling, sequential=False)

        wait_s = min(self.config.fetch_timeout_s, req.timeout_s or self.config.fetch_timeout_s)
        try:
            path = self.cache.obtain(key, fill, wait_s,
                                     fresh_for_s=0.0 if req.digest else self.config.proxy_fresh_for_s)
        except errors.DownloadTimeout:   # the fill goes on for the cache; the output stays untouched
            flight = self.cache.filling(key)
            raise errors.DownloadTimeout("download timed out after %s" % (
                received(*flight.received) if flight else human_duration(wait_s)))
        _copy_out(path, req.output, wait_s - (time.monotonic() - started))
        result = filled.get("result")
        if result is None:   # another request's download, or the cache
            with self._lock:
                tid = self._task_of.get(key, "")
            size = os.path.getsize(path)
            result = DownloadResult(req.url, path, size, tid, 0.0, 0, 0, 0, "daemon-cache",
                                    bytes_from_cache=size)
        out = result.to_json()
        out.update(path=req.output, elapsed_s=time.monotonic() - started)
        return out

    def _mirror_of(self, url: str) -> RegistryMirror:
        """One more registry's mirror (--mirror-registry): its own tokens and outage memory."""
        return RegistryMirror(url, self.upstream, self.cache, self.fetch, self.config.fetch_timeout_s,
                              BearerTokens(self.upstream, url.startswith("http:")),
                              OutageMemory(self.config.outage_access_ttl_s))

    def stats(self) -> dict:
        with self._lock:
            totals = dict(self._totals)
        return {"version": __version__, "peer_id": self.p2p.peer_id,
                "bytes_from_source": totals["source"], "bytes_from_supernode": totals["supernode"],
                "bytes_from_peers": totals["peers"], "downloads": totals["downloads"],
                "fallbacks": totals["fallbacks"], "announced": totals["announced"],
                "cache_bytes": self.cache.total_bytes(),
                "cache_files": len(self.cache.keys()), "seeding": len(self.p2p.seeding),
                "uploaded_bytes": self.p2p.uploaded_bytes,
                "damaged_pieces": totals["damaged_pieces"], "repaired_pieces": totals["repaired_pieces"],
                "refetched": totals["refetched"],
                "subscription": self.subscriber.view() if self.subscriber is not None else None}

    # damage --------------------------------------------------------------------------------
    def cache_damaged(self, key: str, bad: List[int], what: str) -> None:
        """The cached file `key` has `bad` pieces ([-1]: bad as a whole): repair it on a
        fill of its own (the bad pieces through P2P, in place), else drop it and fetch it
        again whole. Either way its bad bytes are served no more from now on."""
        with self._lock:
            if key in self._repairing:
                return
            self._repairing.add(key)
            self._totals["damaged_pieces"] += len(bad)
            tid = self._task_of.get(key)
        log.warning("cache %s damaged: %s; withdrawn, fetching it again", key, what)
        if self.stopping.is_set():
            self._repair_over(key)
            return
        if tid and min(bad) >= 0 and self.p2p.registration(tid) is not None:
            self.cache.set_aside(key)   # requests now follow the repair, as they follow a fill
            self._watch(key, self.cache.begin(key, functools.partial(self._repair_fill, tid, bad)),
                        bad)
        else:
            self._refetch(key)

    def _repair_fill(self, tid: str, bad: List[int], into: str, filling: Filling) -> None:
        try:
            result = self.p2p.repair(tid, into, bad, on_storage=filling.publish, cancel=filling.cancel)
        except BaseException:
            _remove(into)
            raise
        if result is None:
            _remove(into)
            raise errors.P2PUnavailable("no supernode could deliver the damaged pieces")

    def _refetch(self, key: str) -> None:
        """Drop the cached file and fetch it again whole, through P2P."""
        seed = self.seeds.get(key)
        with self._lock:
            tid = self._task_of.get(key)
        registration = self.p2p.registration(tid) if tid else None
        self.cache.remove(key)
        if seed is None or self.stopping.is_set():
            self._repair_over(key)
            return

        def fill(into: str, filling: Filling) -> None:
            self.fetch(seed.url, into, digest=seed.digest, identifier=seed.identifier,
                       headers=registration.headers if registration is not None else None,
                       filters=seed.filters, filling=filling, sequential=False)

        self._watch(key, self.cache.begin(key, fill), None)

    def _watch(self, key: str, entry, bad: Optional[List[int]]) -> None:
        threading.Thread(target=self._repaired, args=(key, entry, bad), daemon=True,
                         name="daemon-repair-" + key[:24]).start()

    def _repaired(self, key: str, entry, bad: Optional[List[int]]) -> None:
        """Count the outcome; a piece repair that failed falls back to a whole refetch."""
        failed = isinstance(entry, Filling) and (not entry.wait(self.config.fetch_timeout_s)
                                                 or entry.error is not None)
        if failed and bad is not None:
            log.warning("cache %s pieces could not be fetched again (%s); fetching it whole",
                        key, entry.error or "timed out")
            self._refetch(key)
            return
        if failed:
            log.warning("cache %s could not be fetched again: %s", key, entry.error or "timed out")
        else:
            log.info("cache %s %s", key, "fetched again" if bad is None
                     else "repaired (%d piece(s) fetched again)" % len(bad))
            with self._lock:
                if bad is None:
                    self._totals["refetched"] += 1
                else:
                    self._totals["repaired_pieces"] += len(bad)
        self._repair_over(key)

    def _repair_over(self, key: str) -> None:
        with self._lock:
            self._repairing.discard(key)

    def _recheck(self, key: str, tid: str, address: str, checks) -> None:
        """Peers discarded these pieces of ours: check them; report the good ones done
        again (the supernode withdrew them meanwhile); a bad one means the file is damaged."""
        seed = self.seeds.get(key)
        path = self.cache.path_of(key)
        try:
            length = os.path.getsize(path)
        except OSError:
            return   # evicted meanwhile, or set aside for a repair: nothing to offer again
        if seed is None:
            return
        good, bad = [], []
        for check in checks:
            if check.num >= piece_count(length, seed.piece_size):
                continue
            start, size = piece_range(check.num, length, seed.piece_size)
            (good if piece_is_good(path, start, size, check.sha256) else bad).append(check.num)
        if bad:
            self.cache_damaged(key, bad, "pieces peers discarded that do not match their "
                               "digests: %s" % ", ".join(map(str, bad)))
            return
        client = SupernodeClient(address, timeout_s=5, tls=self.p2p.tls, secrets=self.p2p.secrets)
        try:
            client.schedule(tid, ScheduleRequest(self.p2p.peer_id, done=good, want=0,
                                                 content_version=self.p2p.content_version_of(tid) or None))
        except errors.DflyError as e:
            log.warning("cannot report %s pieces good again: %s", key, e)
        finally:
            client.close()

    # upkeep ------------------------------------------------------------------------------
    def _stored(self, key: str) -> None:
        self.scrubber.cache_changed()   # a file this process never checked: the scrub's next

    def _evicted(self, key: str) -> None:
        with self._lock:
            tid = self._task_of.pop(key, None)
            self._unannounced.pop(key, None)
        self.seeds.remove(key)
        if tid:
            self.p2p.release(tid)

    def _wait_for_the_view(self) -> None:
        """Gossip mode with members to join: the cache is offered once the join brought
        their view (one push-pull carries all of it), or JOIN_WAIT_S passed. Offered
        earlier, this scheduler, alone in its view, is every task's home and loads them
        all, copies no one asks for and that stay when the view comes."""
        if self.gossip is None or not self.config.join:
            return
        deadline = time.monotonic() + JOIN_WAIT_S
        while not any(state in ("alive", "suspect") and meta.get("api") != self.address
                      for state, meta in self.gossip.metas()):
            if time.monotonic() >= deadline or self.stopping.wait(0.05):
                return

    def _janitor_loop(self) -> None:
        # What the cache held before a restart is offered again (to the own scheduler in
        # gossip mode, which sends the offer on to the task's owner).
        if self.config.supernode or self.scheduler is not None:
            cached = set(self.cache.keys())
            with self._lock:
                for key in self.seeds.keys():
                    if key in cached:
                        self._unannounced.setdefault(key, (0.0, self.config.heartbeat_s))
                    else:
                        self.seeds.remove(key)
        self._wait_for_the_view()
        last_cleanup = time.monotonic()
        while True:
            self._announce_due()
            if self.stopping.wait(self.config.heartbeat_s):
                return
            self._heartbeat()
            if time.monotonic() - last_cleanup >= min(CLEANUP_EVERY_S, self.config.heartbeat_s * 6):
                last_cleanup = time.monotonic()
                self.cache.cleanup()

    def _heartbeat(self) -> None:
        """Tell the supernodes we still serve; a task one forgot (a restart, a `Gone`) or
        whose supernode died is announced again, to it or to the next that answers."""
        with self._lock:
            key_of = {tid: key for key, tid in self._task_of.items()}
        for tid, address in self.p2p.seeding.items():
            client = SupernodeClient(address, timeout_s=5, tls=self.p2p.tls, secrets=self.p2p.secrets)
            try:
                reply = client.heartbeat(tid, self.p2p.peer_id)
                if stale(self.p2p.content_version_of(tid), reply.content_version):
                    self._source_changed(key_of.get(tid), tid)
                elif reply.checks and tid in key_of:
                    self._recheck(key_of[tid], tid, address, reply.checks)
                continue
            except (errors.Gone, errors.NotFound, SupernodeDown) as e:
                log.info("heartbeat for %s to %s: %s; announcing it again", tid[:12], address, e)
                lost = not isinstance(e, SupernodeDown)
            except errors.DflyError as e:
                log.warning("heartbeat for %s to %s failed: %s", tid[:12], address, e)
                continue
            finally:
                client.close()
            key = key_of.get(tid)
            registration = self.p2p.registration(tid)
            if key is not None and self._announce(key, registration.headers if registration else None):
                continue
            if lost:   # nobody offers it now: withdraw, and try again later
                self.p2p.release(tid)
                if key is not None:
                    with self._lock:
                        self._unannounced.setdefault(key, (0.0, self.config.heartbeat_s))

    def _source_changed(self, key: Optional[str], tid: str) -> None:
        """The cached file is of content the source no longer has: stop offering it."""
        log.info("the source of task %s changed; its cached file is no longer offered to peers",
                 tid[:12])
        self.p2p.release(tid)
        if key is not None:
            with self._lock:
                self._task_of.pop(key, None)
                self._unannounced.pop(key, None)
            self.seeds.remove(key)

    def _announce_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [(key, backoff) for key, (at, backoff) in self._unannounced.items() if at <= now]
        for key, backoff in due:
            if self.stopping.is_set():
                return
            done = self._announce(key)
            with self._lock:
                if done or key not in self._unannounced:
                    self._unannounced.pop(key, None)
                else:   # the supernode is fetching it again, or is down: back off
                    self._unannounced[key] = (time.monotonic() + backoff,
                                              min(backoff * 2, MAX_ANNOUNCE_BACKOFF_S))

    def _announce(self, key: str, headers: Optional[Dict[str, str]] = None) -> bool:
        """Offer the cached file `key` to peers again; False when no supernode took it."""
        seed = self.seeds.get(key)
        if seed is None or key not in self.cache.keys():
            with self._lock:
                self._unannounced.pop(key, None)
            return False
        try:
            tid = self.p2p.announce(seed.url, self.cache.path_of(key), seed.piece_size,
                                    digest=seed.digest, headers=headers, filters=seed.filters,
                                    identifier=seed.identifier, content_version=seed.content_version)
        except errors.SourceChanged as e:
            log.info("not announcing %s: %s", key, e)
            with self._lock:
                self._unannounced.pop(key, None)
            self.seeds.remove(key)
            return False
        except errors.DflyError as e:
            log.warning("cannot announce %s: %s", key, e)
            return False
        if tid is None:
            return False
        log.info("announced %s as holder of task %s", key, tid[:12])
        with self._lock:
            self._task_of[key] = tid
            self._unannounced.pop(key, None)
            self._totals["announced"] += 1
        return True


def _piece_digests(storage) -> List[str]:
    """Each piece's verified sha256, in order; empty unless every piece has one."""
    if storage.length is None or not storage.piece_size:
        return []
    count = piece_count(storage.length, storage.piece_size)
    digests = [storage.digests.get(n, "") for n in range(count)]
    return digests if all(digests) else []


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class BadOutput(errors.LocalIOError):
    """The output names a folder that is not there or not ours to write: the caller's
    mistake (400), not a full disk (507); `get` still exits 6 as it would alone."""
    http_status = 400


def check_output(output: str) -> None:
    """Before any download: the output's folder must exist and be writable by the daemon,
    which is the caller's user (it read the token); the daemon creates no folder."""
    if out_rules.descriptor_of(output) is not None:
        raise BadOutput("output %s names a descriptor of the caller's process, which the daemon "
                        "cannot write: download in that process" % output)
    folder = os.path.dirname(output)
    if not os.path.isdir(folder):
        raise BadOutput("output directory %s does not exist" % folder)
    if os.path.isdir(output):
        raise BadOutput("output %s is a directory" % output)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadOutput("output directory %s is not writable by the daemon's user" % folder)


def write_secret(path: str, secret: str) -> None:
    """Write `secret` to `path` readable by this user only (0600 from creation, never
    wider for a moment), replacing whatever was there."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temp = "%s.%s.tmp" % (path, uuid.uuid4().hex[:8])
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
        os.replace(temp, path)
    except OSError:
        try:
            os.remove(temp)
        except OSError:
            pass
        raise


def _copy_out(path: str, output: str, wait_s: float) -> None:
    """Copy the cached file to `output` as `dfly get` would write it (peer/output.py): via a
    temporary name beside the file (a symlink's target), or in order into a device or FIFO
    (whose reader is waited for `wait_s` at most: the get that asked has gone by then).
    A copy, not a link: a user editing the output in place must not change what peers get."""
    target, in_order = out_rules.resolve(output)
    if in_order:
        out = out_rules.open_in_order(target, output, max(0.0, wait_s))
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    out_rules.write(out, block, output)
        except BaseException:
            out_rules.close(out, output, quietly=True)
            raise
        out_rules.close(out, output)
        return
    out_rules.remove_stale_parts(target)
    temp, fd = out_rules.create_part(target, uuid.uuid4().hex[:8], output)
    try:   # `fd` keeps the part locked (no sweep takes it) while copyfile writes it by name
        shutil.copyfile(path, temp)
        os.replace(temp, target)
    except OSError as e:
        try:
            os.remove(temp)
        except OSError:
            pass
        raise errors.LocalIOError("cannot write %s: %s" % (output, e.strerror or e))
    finally:
        os.close(fd)


def start(config: DaemonConfig, data_dir: str) -> RunningDaemon:
    os.makedirs(data_dir, exist_ok=True)
    return RunningDaemon(config, data_dir).start()


def run(config: DaemonConfig, data_dir: str, ready: Optional[threading.Event] = None,
        notifier=None) -> int:
    """Serve until SIGINT or SIGTERM; `notifier` (notify.Notifier) tells systemd."""
    log_to(data_dir, config.log_level, "daemon", config.log_format)
    catch_signals()   # before "listening on": a stop sent on seeing it must not be lost
    if notifier is not None:
        notifier.status("daemon starting (data in %s)" % data_dir)
    running = start(config, data_dir)
    log.info("daemon listening on %s (mirror of %s), data in %s", running.address,
             config.registry_mirror or "nothing", data_dir)
    return serve_until_signalled(running, "daemon", ready, notifier,
                                 "daemon serving on %s (mirror of %s)"
                                 % (running.address, config.registry_mirror or "nothing"))

