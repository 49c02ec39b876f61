"""The supernode's metric families (docs/METRICS.md), registered into one
dfly.metrics.Registry. Events are counted where they happen (service.py calls
the counters here, lock-free); what the supernode already keeps (its tasks,
peers, cache, cluster view) is read at scrape time, so nothing is kept twice."""
import os
import time
from typing import Dict

from dfly.gossip import metrics as gossip_metrics
from dfly.metrics import Registry
from dfly.protocol.messages import DIGEST_MISMATCH, SHORT_PIECE

# Failure reasons a peer reports for a piece, as the label values they are counted under.
PIECE_FAILURE_REASONS = ((DIGEST_MISMATCH, "digest_mismatch"), (SHORT_PIECE, "short_piece"),
                         ("timed out", "timeout"), ("timeout", "timeout"),
                         ("refused", "connection"), ("connect", "connection"),
                         ("reset", "connection"), ("gone", "not_found"), ("404", "not_found"))


def piece_failure_reason(reason: str) -> str:
    """A bounded label value for a peer's free-text failure reason."""
    text = reason.lower()
    for prefix, label in PIECE_FAILURE_REASONS:
        if prefix in text:
            return label
    return "other"


class SupernodeMetrics:
    def __init__(self):
        r = self.registry = Registry()
        self.source_bytes = r.counter(
            "dfly_supernode_download_bytes_total",
            "Bytes the supernode downloaded, by where they came from (a supernode reads only its sources)",
            ("source",))
        self.uploaded_bytes = r.counter(
            "dfly_supernode_upload_bytes_total", "Bytes of pieces the supernode served to peers")
        self.pieces_served = r.counter(
            "dfly_supernode_pieces_served_total", "Pieces the supernode served to peers")
        self.tasks_registered = r.counter(
            "dfly_supernode_tasks_registered_total", "Tasks created by a peer's registration")
        self.tasks_succeeded = r.counter(
            "dfly_supernode_tasks_succeeded_total", "Source fetches that completed and verified")
        self.tasks_failed = r.counter(
            "dfly_supernode_tasks_failed_total",
            "Source fetches that failed, by reason (SourceError, DigestMismatch, SourceDenied, "
            "Timeout, LocalIOError, InternalError)", ("reason",))
        self.piece_failures = r.counter(
            "dfly_supernode_piece_failures_total",
            "Piece fetches peers reported failed, by reason", ("reason",))
        self.peers_blacklisted = r.counter(
            "dfly_supernode_peers_blacklisted_total",
            "Peers no longer sent to as holders of a task after too many errors")
        self.peers_forgotten = r.counter(
            "dfly_supernode_peers_forgotten_total", "Peers forgotten after --peer-ttl of silence")
        self.schedule_seconds = r.histogram(
            "dfly_supernode_schedule_reply_seconds",
            "Time the supernode took to answer a schedule call, long-poll waits left out")
        self.zone_bytes = r.counter(
            "dfly_supernode_peer_zone_bytes_total",
            "Bytes peers fetched from peers in their own zone (within) or another (across), "
            "by the --location labels both gave", ("zone",))
        for zone in ("within", "across"):
            self.zone_bytes.labels(zone)   # shown as 0 before any is counted
        self.damaged_pieces = r.counter(
            "dfly_supernode_damaged_pieces_total",
            "Pieces of the supernode's cache found damaged (a check after peers' reports, the scrub)")
        self.repaired_pieces = r.counter(
            "dfly_supernode_repaired_pieces_total",
            "Damaged pieces of the supernode's cache fetched again, checked and offered again")
        self.pieces_discarded = r.counter(
            "dfly_supernode_pieces_discarded_total",
            "Pieces peers discarded after a failed digest check, by holder (supernode, peer)",
            ("holder",))
        for holder in ("supernode", "peer"):
            self.pieces_discarded.labels(holder)   # shown as 0 before any is counted
        self.source_fetch_seconds = r.histogram(
            "dfly_supernode_source_fetch_seconds",
            "Duration of a task's source fetch, by result", ("result",))

    def watch(self, service) -> None:
        """Gauges read from `service` (a Supernode) at scrape time."""
        r = self.registry
        r.gauge("dfly_supernode_tasks", "Tasks in memory, by state",
                ("state",), read=lambda: _tasks_by_state(service))
        r.gauge("dfly_supernode_peers", "Peers registered, over every task",
                read=lambda: {(): sum(len(t.scheduler.peers) for t in _tasks(service))})
        r.gauge("dfly_supernode_upload_slots_in_use",
                "Pieces the supernode is sending right now, over every task",
                read=lambda: {(): sum(t.scheduler.supernode_uploads for t in _tasks(service))})
        r.gauge("dfly_supernode_cache_bytes", "Bytes in the supernode's cache on disk",
                read=lambda: {(): _cache_bytes(service.tasks_dir)})
        r.gauge("dfly_supernode_cache_limit_bytes", "The cache size limit (--cache-size)",
                read=lambda: {(): service.config.cache_size})
        r.counter("dfly_supernode_sources_denied_total", "Sources the source policy denied",
                  read=lambda: {(): service.sources_denied})
        r.gauge("dfly_supernode_cluster_member_up",
                "1 for each cluster member this supernode sees alive, 0 for each it sees down",
                ("member",), read=lambda: _members(service, "alive"))
        r.gauge("dfly_supernode_cluster_member_tasks",
                "Tasks each cluster member serves, as this supernode last heard", ("member",),
                read=lambda: _members(service, "active_tasks"))
        gossip_metrics.watch(r, lambda: getattr(service.membership, "node", None))   # --gossip
        r.gauge("dfly_supernode_cluster_tasks_owned",
                "Tasks known here (served or replicated) that each cluster member owns now",
                ("member",), read=lambda: _owners(service))

    def piece_served(self, size: int) -> None:
        self.pieces_served.inc()
        self.uploaded_bytes.inc(size)

    def moved_between_peers(self, in_one_zone, size: int) -> None:
        """As Task.moved_between_peers, but kept when the task leaves memory: a counter."""
        if in_one_zone is not None:
            self.zone_bytes.labels("within" if in_one_zone else "across").inc(size)

    def piece_failed(self, reason: str) -> None:
        self.piece_failures.labels(piece_failure_reason(reason)).inc()

    def fetch_ended(self, state: str, error_kind: str, source_bytes: int, began: float) -> None:
        """A source fetch ended with the task in `state` (DONE, FAILED, other: abandoned)."""
        self.source_bytes.labels("source").inc(source_bytes)
        result = "success" if state == "done" else "failure" if state == "failed" else "other"
        self.source_fetch_seconds.labels(result).observe(time.monotonic() - began)
        if state == "done":
            self.tasks_succeeded.inc()
        elif state == "failed":
            self.tasks_failed.labels(error_kind or "unknown").inc()


def _tasks(service) -> list:
    with service.loading() as tasks:
        return list(tasks.values())


def _tasks_by_state(service) -> Dict[tuple, int]:
    counts = {(s,): 0 for s in ("pending", "running", "done", "failed")}
    for task in _tasks(service):
        counts[(task.state,)] = counts.get((task.state,), 0) + 1
    return counts


def _cache_bytes(folder: str) -> int:
    total = 0
    try:
        for task in os.scandir(folder):
            if task.is_dir(follow_symlinks=False):
                for entry in os.scandir(task.path):
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat().st_size
    except OSError:
        pass   # a folder removed while we looked: counted next scrape
    return total


def _members(service, field: str) -> Dict[tuple, int]:
    status = service.cluster_status()
    return {(m["member"],): int(m[field]) for m in status.get("members", [])}


def _owners(service) -> Dict[tuple, int]:
    status = service.cluster_status()
    counts = {(m["member"],): 0 for m in status.get("members", [])}
    for task in status.get("tasks", []):
        counts[(task["owner"],)] = counts.get((task["owner"],), 0) + 1
    return counts

