"""The daemon's metric families (docs/METRICS.md), registered into one
dfly.metrics.Registry. The byte totals, cache and seeding state the daemon
already keeps are read at scrape time; downloads and mirror/proxy requests are
counted as they end (once per request, never per byte)."""
import functools
import time
from typing import Callable, Optional

from dfly import errors
from dfly.gossip import metrics as gossip_metrics
from dfly.httpd import FileSlice, Response
from dfly.metrics import Registry
from dfly.peer.front import Spans
from dfly.protocol.proxyrules import decide


class DaemonMetrics:
    def __init__(self):
        r = self.registry = Registry()
        self._local = r.counter(
            "dfly_daemon_cache_served_bytes_total",
            "Bytes the daemon's clients got straight from its cache (no download)")
        self.downloads = r.counter(
            "dfly_daemon_downloads_total",
            "Downloads the daemon made for its clients, by result and failure reason "
            "(the error kind: SourceError, DigestMismatch, DownloadTimeout, ...)",
            ("result", "reason"))
        self.download_seconds = r.histogram(
            "dfly_daemon_download_seconds", "Duration of a whole download, by result", ("result",))
        self.mirror_requests = r.counter(
            "dfly_daemon_mirror_requests_total",
            "Registry-mirror requests, by outcome (cache, p2p, upstream, error)", ("outcome",))
        self.proxy_requests = r.counter(
            "dfly_daemon_proxy_requests_total",
            "HTTP proxy requests, by the action of the rule that matched (none: no rule; "
            "connect: a tunnel) and by outcome (cache, p2p, upstream, error)",
            ("action", "outcome"))

    def watch(self, daemon) -> None:
        """Families read from `daemon` (a RunningDaemon) at scrape time."""
        r = self.registry
        gossip_metrics.watch(r, lambda: daemon.gossip)

        def totals():
            with daemon._lock:
                return dict(daemon._totals)
        r.counter("dfly_daemon_download_bytes_total",
                  "Bytes the daemon downloaded, by where they came from (local: answered "
                  "from its cache without a download)", ("source",),
                  read=lambda: _bytes_by_source(totals(), self._local))
        r.counter("dfly_daemon_upload_bytes_total", "Bytes of pieces the daemon served to peers",
                  read=lambda: {(): daemon.p2p.uploaded_bytes})
        r.counter("dfly_daemon_source_fallbacks_total",
                  "P2P downloads that failed and were fetched straight from the source",
                  read=lambda: {(): totals()["fallbacks"]})
        r.counter("dfly_daemon_damaged_pieces_total", "Cached pieces found damaged",
                  read=lambda: {(): totals()["damaged_pieces"]})
        r.counter("dfly_daemon_repaired_pieces_total", "Damaged pieces fetched again",
                  read=lambda: {(): totals()["repaired_pieces"]})
        r.gauge("dfly_daemon_cache_bytes", "Bytes in the daemon's cache",
                read=lambda: {(): daemon.cache.total_bytes()})
        r.gauge("dfly_daemon_cache_limit_bytes", "The cache size limit (--cache-size)",
                read=lambda: {(): daemon.config.cache_size})
        r.gauge("dfly_daemon_cache_files", "Files in the daemon's cache",
                read=lambda: {(): len(daemon.cache.keys())})
        r.gauge("dfly_daemon_seeding_tasks", "Tasks the daemon serves to other peers",
                read=lambda: {(): len(daemon.p2p.seeding)})
        r.gauge("dfly_daemon_upload_slots_in_use", "Pieces the daemon is sending to peers now",
                read=lambda: {(): daemon.p2p.uploads_in_progress})
        r.counter("dfly_daemon_publications_total",
                  "Publications its --subscribe topics took, by outcome (delivered: in the cache; "
                  "given_up: an item kept failing; missed: some had left the log's retention "
                  "window before it came for them)", ("outcome",), read=lambda: _publications(daemon))

    def download_ended(self, began: float, error: Optional[BaseException]) -> None:
        result = "success" if error is None else "failure"
        reason = "" if error is None else _reason(error)
        self.downloads.labels(result, reason).inc()
        self.download_seconds.labels(result).observe(time.monotonic() - began)

    def served(self, family, labels: tuple, call: Callable[[], Response]) -> Response:
        """Answer with `call()`, counting the request under `labels` + its outcome."""
        try:
            response = call()
        except BaseException:
            family.labels(*labels, "error").inc()
            raise
        outcome = _outcome(response)
        if outcome == "cache":
            self._local.inc(response.body.count)
        family.labels(*labels, outcome).inc()
        return response

    def proxy_action(self, rules, request) -> str:
        if request.method == "CONNECT":
            return "connect"
        rule = decide(rules, request.method, request.target).rule
        return rule.action if rule is not None else "none"


def counted(fetch):
    """Decorates RunningDaemon.fetch: every download counted and timed, once."""
    @functools.wraps(fetch)
    def wrapper(self, *args, **kwargs):
        began = time.monotonic()
        try:
            result = fetch(self, *args, **kwargs)
        except BaseException as e:
            self.metrics.download_ended(began, e)
            raise
        self.metrics.download_ended(began, None)
        return result
    return wrapper


def _bytes_by_source(totals: dict, local) -> dict:
    return {("source",): totals["source"], ("supernode",): totals["supernode"],
            ("peer",): totals["peers"], ("local",): local.labels().value()}


def _reason(error: BaseException) -> str:
    if isinstance(error, errors.DflyError):
        return type(error).__name__
    return "LocalIOError" if isinstance(error, OSError) else "InternalError"


def _outcome(response: Response) -> str:
    if response.status >= 400:
        return "error"
    if isinstance(response.body, FileSlice):
        return "cache"
    if isinstance(response.body, Spans):   # followed as it is filled: a download under way
        return "p2p"
    return "upstream"


def _publications(daemon) -> dict:
    subscriber = getattr(daemon, "subscriber", None)
    if subscriber is None:
        return {}
    view = subscriber.view()
    return {(outcome,): view[outcome] for outcome in ("delivered", "given_up", "missed")}
