"""The daemon's subscription: fetch what the supernode cluster publishes on its topics.

One thread long-polls a supernode (GET /v1/publications, protocol/publications.py)
for the publications after the seq this daemon has fetched everything up to,
and fetches each one's items into the cache exactly as the registry mirror
(an image's blobs, keyed by digest) or the proxy (a file, keyed by its task)
would, through P2P, so a later pull finds them cached. At most
--subscribe-concurrency items are fetched at once, and a delivery starts after a
random wait of up to --subscribe-jitter, so one publish does not have every
host start on the same links in the same second.

Delivery is at-least-once: the resume position (per supernode: each member of
a cluster numbers its own log) and the ids of recently fetched publications
are written to DATA_DIR/daemon/subscriptions.json only after the fetches
ended, and the next poll carries the position as its acknowledgement. A
daemon that stopped mid-delivery asks again from the old position when it is
back; what it fetched already is a cache hit (and a known id is skipped), so
a duplicate costs nothing. An item that keeps failing is tried MAX_ATTEMPTS
times (with a pause between), then given up and logged, so one bad publication
does not hold back the ones after it.
"""
import json
import logging
import os
import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from dfly import errors
from dfly.peer.registry import blob_key
from dfly.protocol import publications as rules
from dfly.protocol import topics
from dfly.protocol.publications import Publication
from dfly.protocol.task import PEER_ID, task_id
from dfly.supernode.client import PeerSecrets, SupernodeClient

log = logging.getLogger("dfly.daemon")

MAX_ATTEMPTS = 3
RETRY_PAUSE_S = 5.0
MAX_BACKOFF_S = 30.0
KEEP_IDS = 4096          # ids of fetched publications remembered (a move to another member)
STATE_FILE = "subscriptions.json"


class Subscriber:
    def __init__(self, daemon, patterns: Sequence[str], concurrency: int, jitter_s: float,
                 poll_s: float, rng: Callable[[], float] = random.random,
                 platforms: Sequence[str] = ()):
        self.daemon = daemon
        self.patterns = [p.text for p in topics.parse_patterns(list(patterns))]   # BadRequest: exit 2
        self.platforms = rules.parse_platforms(platforms)   # ValueError: exit 2
        self.concurrency = max(1, concurrency)
        self.jitter_s = max(0.0, jitter_s)
        self.poll_s = max(0.1, poll_s)
        self.rng = rng
        self.retry_pause_s = RETRY_PAUSE_S
        self.supernodes = list(daemon.config.supernode)
        self.state_path = os.path.join(daemon.data_dir, "daemon", STATE_FILE)
        state = _read_state(self.state_path)
        # One id across restarts (its row in /v1/subscriptions stays one row), proved to
        # each supernode with the secret that supernode gave it, kept beside it.
        self.subscriber_id: str = state["subscriber"] or "sub-" + uuid.uuid4().hex[:24]
        self.secrets = PeerSecrets(state["secrets"])
        self.positions: Dict[str, int] = state["positions"]
        self.done: List[str] = state["done"]
        self._attempts: Dict[str, int] = {}
        self._lock = threading.Lock()
        self._client: Optional[SupernodeClient] = None
        self.counts = {"delivered": 0, "items": 0, "given_up": 0, "missed": 0}
        self._stop = daemon.stopping
        self._thread = threading.Thread(target=self._loop, name="daemon-subscriber", daemon=True)

    def start(self) -> "Subscriber":
        self._thread.start()
        return self

    def interrupt(self) -> None:
        """After daemon.stopping is set: end the poll in flight now (closing the cache
        ends the fetches in flight)."""
        with self._lock:
            client = self._client
        if client is not None:
            client.interrupt()

    def stop(self) -> None:
        self.interrupt()
        if self._thread.is_alive():
            self._thread.join(10)

    def view(self) -> dict:
        with self._lock:
            return dict(self.counts, topics=list(self.patterns), positions=dict(self.positions))

    # the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        backoff, turn = 1.0, 0
        while not self._stop.is_set():
            address = self.supernodes[turn % len(self.supernodes)]
            try:
                reply = self._poll(address)
            except errors.DflyError as e:
                if self._stop.is_set():   # our own interrupt, at shutdown
                    return
                log.warning("subscription: polling %s failed: %s", address, e)
                turn += 1   # the next supernode; around the list, pausing longer each time
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 1.0
            self._handle(address, reply)

    def _poll(self, address: str) -> dict:
        client = SupernodeClient(address, timeout_s=10.0, tls=self.daemon.p2p.tls, secrets=self.secrets)
        with self._lock:
            self._client = client
            after = self.positions.get(address, 0)
            secret = self.secrets.get(address)
        try:
            if self._stop.is_set():
                raise errors.Cancelled("stopping")
            return client.publications(self.subscriber_id, after, self.patterns, self.poll_s)
        except errors.Forbidden:   # our secret there is lost (a crash before it was saved)
            self.secrets.put(address, "")
            raise
        finally:
            with self._lock:
                self._client = None
                if self.secrets.get(address) != secret:
                    self._save_locked()
            client.close()

    def _handle(self, address: str, reply: dict) -> None:
        if reply.get("missed"):
            log.warning("subscription: publications after %d left %s's log (its retention window) "
                        "before this daemon came for them", self.positions.get(address, 0), address)
            with self._lock:
                self.counts["missed"] += 1
        pubs = []
        for doc in reply.get("publications") or []:
            try:
                pub = rules.parse(doc)
            except rules.BadRecord:
                log.warning("subscription: %s sent a publication that does not parse; skipped", address)
                continue
            if pub.id not in self.done and topics.any_matches(topics.parse_patterns(self.patterns),
                                                                pub.url, pub.names):
                pubs.append(pub)
        if pubs and self.jitter_s and self._stop.wait(self.rng() * self.jitter_s):
            return
        failed = self._deliver(pubs)
        if self._stop.is_set():
            return   # not acknowledged: asked again after a restart
        if failed:   # not acknowledged: asked again after a pause (the fetched ones are skipped)
            self._stop.wait(self.retry_pause_s)
            return
        nxt = reply.get("next")
        with self._lock:
            if isinstance(nxt, int) and nxt >= 0 and nxt != self.positions.get(address):
                self.positions[address] = nxt
                self._save_locked()

    def _deliver(self, pubs: List[Publication]) -> bool:
        """Fetch every item of `pubs`; whether any publication must be tried again."""
        if not pubs:
            return False
        items = [(pub, item) for pub in pubs for item in _items(pub, self.platforms)]
        with ThreadPoolExecutor(max_workers=self.concurrency,
                                thread_name_prefix="daemon-subscribed-fetch") as pool:
            outcomes = list(pool.map(lambda pi: self._fetch(*pi), items))
        failed_ids = {pub.id for (pub, _), ok in zip(items, outcomes) if not ok}
        retry = False
        with self._lock:
            for pub in pubs:
                if pub.id not in failed_ids:
                    self._remember_locked(pub.id)
                    self.counts["delivered"] += 1
                    log.info("subscription: publication %s (%s) is in the cache", pub.id, pub.url[:200])
                    continue
                tries = self._attempts[pub.id] = self._attempts.get(pub.id, 0) + 1
                if tries >= MAX_ATTEMPTS and not self._stop.is_set():
                    log.warning("subscription: giving up on publication %s (%s) after %d attempts",
                                pub.id, pub.url[:200], tries)
                    self._remember_locked(pub.id)
                    self.counts["given_up"] += 1
                else:
                    retry = True
        return retry

    def _fetch(self, pub: Publication, item: Tuple[str, str, Optional[str]]) -> bool:
        key, url, digest = item
        if self._stop.is_set():
            return False

        def fill(into: str, filling) -> None:
            self.daemon.fetch(url, into, digest=digest, identifier=digest, filters=pub.filters,
                              fallback=False, filling=filling, sequential=False)

        try:
            self.daemon.cache.obtain(key, fill, self.daemon.config.fetch_timeout_s)
        except errors.DflyError as e:
            log.warning("subscription: fetching %s of publication %s failed: %s", url[:200], pub.id, e)
            return False
        with self._lock:
            self.counts["items"] += 1
        return True

    # state -----------------------------------------------------------------------------
    def _remember_locked(self, pid: str) -> None:
        self._attempts.pop(pid, None)
        if pid not in self.done:
            self.done.append(pid)
            del self.done[:-KEEP_IDS]

    def _save_locked(self) -> None:
        """The resume position, written whole under a temporary name, then renamed."""
        os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
        temp = "%s.%s.tmp" % (self.state_path, uuid.uuid4().hex[:8])
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)   # it holds secrets
            with os.fdopen(fd, "w") as f:
                json.dump({"subscriber": self.subscriber_id, "secrets": self.secrets.to_json(),
                           "positions": self.positions, "done": self.done}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, self.state_path)
        except OSError as e:   # the position stays in memory: at worst fetched again
            log.warning("subscription: cannot save %s: %s", self.state_path, e.strerror or e)
            try:
                os.remove(temp)
            except OSError:
                pass


def _items(pub: Publication, platforms: Sequence[str] = ()) -> List[Tuple[str, str, Optional[str]]]:
    """(cache key, URL, digest) of each thing a publication puts in the cache: an image's
    blobs (of `platforms`, if given) as the registry mirror keys them, a file as the proxy does."""
    if pub.kind == "image":
        return [(blob_key(b[0]), pub.blob_url(b[0]), b[0]) for b in pub.blobs
                if rules.platform_wanted(b[2], platforms)]
    return [("task-" + task_id(pub.url, pub.filters), pub.url, None)]


def _read_state(path: str) -> dict:
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    positions, done, secrets = doc.get("positions"), doc.get("done"), doc.get("secrets")
    subscriber = doc.get("subscriber")
    return {"subscriber": subscriber if isinstance(subscriber, str) and PEER_ID.match(subscriber) else "",
            "secrets": {k: v for k, v in secrets.items() if isinstance(k, str) and isinstance(v, str)}
            if isinstance(secrets, dict) else {},
            "positions": {k: v for k, v in positions.items() if isinstance(k, str) and isinstance(v, int)
                          and not isinstance(v, bool) and v >= 0} if isinstance(positions, dict) else {},
            "done": [d for d in done if isinstance(d, str)][-KEEP_IDS:] if isinstance(done, list) else []}
