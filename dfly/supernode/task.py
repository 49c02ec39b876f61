"""One task's state on the supernode: the cached source, its piece digests, the
scheduler, and the long-polling peers waiting for something to change.

Waking is targeted, because a task may have a thousand peers long-polling:
- A change of the whole task (running, failed, reset, done: `changed`) wakes
  every waiter.
- A change that only makes pieces servable (a piece cut or reported, an upload
  slot freed: `offered`) wakes one waiter that lacks one of those pieces and
  hands it a baton. A waiter that got pieces passes the baton on to the next
  waiter lacking them, so one change serves as many waiters as it can, one
  after the other; a waiter that got nothing passes it on at most
  BATON_MISSES more times (it may have been alone in not using the change: a
  blacklist, a piece already in flight), then the chain ends, the capacity
  being used up. Waiters are woken in the order they last waited, so one that
  keeps missing moves to the back. Should a chain end too early, a waiter still
  returns at its long-poll's deadline and asks again.

On disk a task is a folder named by its id: `data` (the source's bytes, written
in order) and `meta.json` (URL, validators, content version, length, piece
size, one sha256 per finished piece, whether the source is complete, pieces
found damaged and not yet fetched again). The meta is rewritten atomically
after every piece, so a crash loses at most the piece being cut. `blocks`
holds each piece's block digests, one line per piece (`NUM PIECE HEX...`: the
piece's own sha256, then its blocks'), appended before the meta names the
piece (so no piece is named without them), the last line of a piece winning:
the meta grows by 66 bytes a piece, not by 9 times that. A line is used only
beside the piece digest it names: peers take a piece whose blocks all verify
without hashing it whole (piece_client.py), so block digests of other bytes
(a stale line) must never be sent with a piece; such a piece goes without.

A task's pieces are of one content version: an opaque id of the bytes, made
whenever the source is cut from byte 0 (from a strong ETag and the length, else
at random: cdn.py), kept while the source is resumed (Range + If-Range) or
revalidated (304), and carried to the member that takes the task over. A new
version forgets every piece peers hold: they are of other bytes. With no strong
ETag a cut from byte 0 keeps the version of the copy it replaces while its
pieces match that copy's digests (piece_cut), so a restart or takeover on an
origin that resumes nothing costs peers nothing when the bytes are the same.
"""
import json
import os
import re
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional, Set

from dfly.protocol.pieces import piece_count, piece_size_for
from dfly.protocol.redact import redact_text, redact_url
from dfly.supernode.scheduler import SchedulerConfig, TaskScheduler

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
HEX_DIGESTS = re.compile(r"^(?:[0-9a-f]{64})+$")   # a `blocks` line's digests, run together
BATON_MISSES = 1
MAX_EARLY_PIECES = 1 << 17   # bounds what reports of pieces not cut yet may cost
MAX_SOURCES = 8          # other registrants' URLs remembered per task
MAX_FAILED_URLS = 64
SWITCHABLE = ("SourceError", "SourceDenied", "DigestMismatch")   # failures another URL may not have


class Baton:
    """Pieces a change made servable, passed from waiter to waiter while it serves them."""

    def __init__(self, pieces: Optional[frozenset], misses: int = BATON_MISSES):
        self.pieces = pieces   # None: any piece
        self.misses = misses


class Waiter:
    """One schedule call long-polling on its task; guarded by the task's lock."""

    def __init__(self, peer_id: str, want: int, lock: threading.RLock):
        self.peer_id = peer_id
        self.want = want
        self.cond = threading.Condition(lock)
        self.woken = False
        self.woken_at: Optional[float] = None   # when the change that concerns it happened
        self.baton: Optional[Baton] = None


class Task:
    def __init__(self, task_id: str, url: str, headers: dict, digest: Optional[str],
                 folder: str, scheduler_config: SchedulerConfig):
        self.task_id = task_id
        self.url = url
        self.headers = headers
        self.digest = digest
        self.folder = folder
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.clock: Callable[[], float] = time.monotonic
        self.events = None   # the supernode's dashboard.Events: a failure is one
        self._waiters: Dict[Waiter, None] = {}   # in the order they last began waiting
        self.scheduler = TaskScheduler(scheduler_config)
        self.state = PENDING
        self.length: Optional[int] = None
        self.piece_size = piece_size_for(None)
        self.digests: List[str] = []
        self.blocks: Dict[int, List[str]] = {}   # piece -> its block digests (cut-through)
        self.etag = ""
        self.last_modified = ""
        self.content_version = ""   # "" until the source answered (or a copy told us)
        self._early: Dict[int, Dict[str, str]] = {}   # piece -> {peer: version}: reported, not cut yet
        # A cut from byte 0 that no strong ETag names keeps the version of the copy it
        # replaces while it matches these digests, that copy's (cdn.py); None: nothing to match.
        self.confirming: Optional[List[str]] = None
        self.error = ""
        self.error_kind = ""
        self.source_bytes = 0
        self.served_bytes = 0
        self.failed_at = 0.0
        self.validated_at: Optional[float] = None
        self.last_access = 0.0
        self.fetching = False
        self.fetch_gen = 0          # which fetch is the task's own; moved on when one is abandoned
        self.progress_at = 0.0      # when that fetch last got bytes (or began running): the watchdog
        self.pruned = False   # dropped by the janitor: a caller holding it must look it up again
        self.adopted_at: Optional[float] = None
        self.geometry_known = False   # piece size decided (the source answered, or a copy told us)
        # Repair (repair.py): pieces whose cached bytes failed a check, withdrawn until
        # fetched again; pieces being checked; what peers discarded, per holder; and the
        # pieces each peer holder is to check itself (told in its heartbeat reply).
        self.damaged: Set[int] = set()
        self.checking: Set[int] = set()
        self.repaired_pieces = 0
        self.discarded: Dict[str, int] = {}
        self.suspects: Dict[str, Set[int]] = {}
        self.good_at: Dict[int, float] = {}   # pieces a check found good, and when
        self.generation = 0   # bumped when the content is forgotten: a repair in flight is void
        # Registrants may name one task by different URLs (a digest, a filtered signed URL).
        # The others are kept, so a dead or wrong first URL cannot hold the task hostage.
        self.sources: Dict[str, dict] = {}       # URL -> its headers, newest last
        self.failed_urls: Dict[str, None] = {}   # URLs that failed since the task last worked
        # Bytes peers fetched from peers, by whether both ends are in one zone (region/zone
        # of their --location); pairs where either end gave none are in neither.
        self.bytes_within_zone = 0
        self.bytes_across_zones = 0
        self.via: tuple = ()   # the supernodes its first registration passed (protocol/tiers.py)

    @property
    def data_path(self) -> str:
        return os.path.join(self.folder, "data")

    @property
    def meta_path(self) -> str:
        return os.path.join(self.folder, "meta.json")

    @property
    def blocks_path(self) -> str:
        return os.path.join(self.folder, "blocks")

    @property
    def piece_count(self) -> Optional[int]:
        """None while the length is unknown (a chunked source still arriving)."""
        if self.length is None:
            return None
        return piece_count(self.length, self.piece_size)

    # state changes: callers hold self.cond --------------------------------------
    def changed(self) -> None:
        """The task as a whole changed: wake every waiter."""
        now = self.clock()
        for waiter in self._waiters:
            self._wake(waiter, None, now)
        self.cond.notify_all()

    def offered(self, pieces: Optional[Iterable[int]]) -> None:
        """`pieces` (None: any) became servable, or a holder of them freed an upload
        slot: wake the first waiter lacking one of them, with a baton."""
        self.pass_baton(Baton(None if pieces is None else frozenset(pieces)))

    def wake_peers(self, peer_ids: Iterable[str]) -> None:
        """Wake the waiters of these peers: they left or were forgotten (and must hear
        so), or reported pieces on another connection (and may now hold them all)."""
        gone = set(peer_ids)
        now = self.clock()
        for waiter in self._waiters:
            if waiter.peer_id in gone:
                self._wake(waiter, None, now)

    # waiting: callers hold self.cond --------------------------------------------------
    def add_waiter(self, peer_id: str, want: int) -> Waiter:
        waiter = Waiter(peer_id, want, self.lock)
        self._waiters[waiter] = None
        return waiter

    def wait(self, waiter: Waiter, timeout_s: float) -> None:
        """Wait until woken or timeout_s passes; the waiter is then at the back of the queue."""
        waiter.woken, waiter.woken_at = False, None
        self._waiters.pop(waiter, None)
        self._waiters[waiter] = None
        waiter.cond.wait_for(lambda: waiter.woken, timeout_s)

    def tried(self, waiter: Waiter, served: bool) -> None:
        """A woken waiter asked the scheduler: pass its baton on, with the misses
        renewed if the change served it, else with one miss fewer (or not at all)."""
        baton, waiter.baton = waiter.baton, None
        if baton is None:
            return
        if served:
            self.pass_baton(Baton(baton.pieces))
        elif baton.misses > 0:
            self.pass_baton(Baton(baton.pieces, baton.misses - 1))

    def stop_waiting(self, waiter: Waiter) -> None:
        """The call ends (an answer, an error): a baton it never tried goes on untouched."""
        self._waiters.pop(waiter, None)
        baton, waiter.baton = waiter.baton, None
        if baton is not None:
            self.pass_baton(baton)

    def pass_baton(self, baton: Baton) -> None:
        """Wake the first waiter not yet woken that lacks one of the baton's pieces."""
        sched = self.scheduler
        for waiter in self._waiters:
            if waiter.woken or waiter.want <= 0:
                continue
            if sched.lacks_any(waiter.peer_id, baton.pieces):
                self._wake(waiter, baton, self.clock())
                return

    def _wake(self, waiter: Waiter, baton: Optional[Baton], now: float) -> None:
        if waiter.woken:
            return
        waiter.woken, waiter.woken_at, waiter.baton = True, now, baton
        waiter.cond.notify()

    def reset(self) -> None:
        """Forget content and peers; the next fetch starts from the source. The content
        version stays: the fetch may find the same bytes (a 304, a resumed Range)."""
        self.scheduler = TaskScheduler(self.scheduler.config)
        self.state, self.length, self.digests, self.adopted_at = PENDING, None, [], None
        self.blocks = {}
        self.geometry_known = False
        self.damaged, self.checking, self.suspects, self.good_at = set(), set(), {}, {}
        self.generation += 1
        self.piece_size = piece_size_for(None)
        self.error = self.error_kind = ""
        self.changed()

    def new_version(self, content_version: str, confirming: Optional[List[str]] = None) -> None:
        """The source is being cut from byte 0. Peers stay registered, holding
        nothing as far as offers go; what they hold is kept as early reports when
        the bytes are the same version (a restarted cut), else forgotten: it is of
        other bytes, and their next reply names the new version. `confirming`: the
        digests the cut must match to stay `content_version` (see piece_cut)."""
        old = self.scheduler
        self.scheduler = TaskScheduler(old.config)
        for peer in old.peers.values():
            self.scheduler.peer_joined(peer.peer_id, peer.addr, peer.last_seen, location=peer.location)
            moved = self.scheduler.peers[peer.peer_id]   # its calls' counts go on
            moved.answered, moved.reported = peer.answered, peer.reported
        same = content_version == self.content_version
        self._early = {num: {p: v for p, v in by.items() if v == content_version}
                       for num, by in self._early.items()}
        if same:
            for peer in old.peers.values():
                for num in peer.held:
                    self.report_early(peer.peer_id, num, content_version)
        self.content_version = content_version
        self.confirming = list(confirming) if confirming else None
        self.digests = []
        self.blocks = {}
        self.damaged, self.checking, self.suspects, self.good_at = set(), set(), {}, {}
        self.generation += 1   # a repair in flight is of the bytes cut before
        self.changed()

    def piece_cut(self, sha256_hex: str) -> bool:
        """The source's next piece was cut as `sha256_hex`, not offered yet. A cut
        keeping the version of the copy it replaces (no strong ETag names the bytes)
        keeps it while each piece matches that copy's digest and no peer claims a
        piece of it whose digest was never known here; else the bytes are a version
        of their own from here on (the pieces cut so far stay: they matched), before
        this piece is offered. True when the version changed."""
        known, num = self.confirming, len(self.digests)
        if known is None or (known[num] == sha256_hex if num < len(known) else not self._early.get(num)):
            return False
        self.content_differs()
        return True

    def vouches_for(self, num: int, assigned: bool) -> bool:
        """May a peer's report of holding cut piece `num` of our version be believed?
        Not one of a kept version's pieces past the copy's known digests that was not
        fetched under an assignment of ours: it may be of other bytes."""
        return assigned or self.confirming is None or num < len(self.confirming)

    def content_differs(self) -> None:
        """The bytes are not those of the version this cut kept: a new version (as an
        unnamed cut gets: random), keeping the pieces cut so far."""
        cut, blocks = self.digests, self.blocks
        self.new_version(os.urandom(8).hex())
        for num, sha256_hex in enumerate(cut):
            self.piece_written(sha256_hex, blocks.get(num))

    def report_early(self, peer_id: str, num: int, content_version: str) -> None:
        """`peer_id` holds piece `num` of `content_version`, which we have not cut (yet):
        believed when we cut it as the same version (a seeder announcing while the
        source is revalidated or resumed keeps its pieces offered)."""
        count = self.piece_count
        if (count is not None and num >= count) or (num not in self._early
                                                    and len(self._early) >= MAX_EARLY_PIECES):
            return
        self._early.setdefault(num, {})[peer_id] = content_version

    def moved_between_peers(self, in_one_zone: Optional[bool], size: int) -> None:
        """A peer reported `size` bytes fetched from another peer; `in_one_zone` as the
        scheduler's fetched_within_zone says (None: a location unknown, not counted)."""
        if in_one_zone is True:
            self.bytes_within_zone += size
        elif in_one_zone is False:
            self.bytes_across_zones += size

    def fail(self, kind: str, message: str, now: float) -> None:
        """The fetch failed; if it failed before cutting any piece (so no peer holds one)
        and another registrant named the task by another URL, that URL is tried instead."""
        self.failed_urls[self.url] = None
        while len(self.failed_urls) > MAX_FAILED_URLS:
            del self.failed_urls[next(iter(self.failed_urls))]
        untried = [u for u in self.sources if u not in self.failed_urls]
        if kind in SWITCHABLE and not self.digests and untried:
            self.use_source(untried[-1], self.sources[untried[-1]])
            return
        self.state, self.error_kind, self.error, self.failed_at = FAILED, kind, message, now
        if self.events is not None:
            self.events.record("task_failed", "%s: %s" % (kind, redact_text(message, self.url)),
                               self.task_id)
        self.changed()

    def source_offered(self, url: str, headers: dict) -> None:
        """A registrant names this task by `url`: the latest credentials for the URL in use
        (the first registrant's may have expired), else one more URL to fall back on."""
        if url == self.url:
            if headers:
                self.headers = headers
            return
        self.sources.pop(url, None)
        self.sources[url] = headers
        while len(self.sources) > MAX_SOURCES:
            del self.sources[next(iter(self.sources))]

    def use_source(self, url: str, headers: dict) -> None:
        """Fetch from `url` from now on (the task restarts: it had nothing to keep)."""
        self.sources.pop(url, None)
        self.url, self.headers = url, headers
        self.reset()

    def piece_written(self, sha256_hex: str, blocks: Optional[List[str]] = None) -> None:
        """The next piece in order was cut from the source into the cache (with the
        digests of its blocks, when known)."""
        self.digests.append(sha256_hex)
        num = len(self.digests) - 1
        if blocks:
            self.blocks[num] = blocks
        else:
            self.blocks.pop(num, None)
        for peer_id, version in self._early.pop(num, {}).items():
            if version == self.content_version and peer_id in self.scheduler.peers:
                self.scheduler.piece_done(peer_id, num, self.clock())
        self.piece_cached(num)

    def piece_cached(self, num: int) -> None:
        """Piece `num` (whose digest we know) is in the cache and can be served."""
        self.damaged.discard(num)
        self.checking.discard(num)
        self.scheduler.piece_available(num, self.piece_count)
        self.offered((num,))

    def piece_withdrawn(self, num: int) -> None:
        """Piece `num` is suspect (being checked): no longer offered from the cache."""
        self.scheduler.piece_unavailable(num)
        self.checking.add(num)

    def piece_damaged(self, num: int) -> None:
        """Piece `num`'s cached bytes are bad: withdrawn until fetched again, and
        remembered in the meta, so a restart does not offer them again."""
        self.scheduler.piece_unavailable(num)
        self.checking.discard(num)
        self.damaged.add(num)

    def is_cached(self, num: int) -> bool:
        return num in self.scheduler.supernode_pieces

    def adopt(self, replica: dict, now: float) -> None:
        """Take over a task another member was serving: its geometry and piece
        digests are known, but none of its bytes are in our cache yet."""
        self.length, self.piece_size = replica["length"], replica["piece_size"]
        self.etag, self.last_modified = replica.get("etag", ""), replica.get("last_modified", "")
        self.content_version = replica.get("content_version") or ""
        self.digests = list(replica["digests"])
        self.blocks = blocks_of(replica)
        self.adopted_at = now
        self.geometry_known = True

    def replica(self) -> dict:
        """What another member needs to take this task over. Not the source's headers
        (credentials): the new owner gets them from the peers registering there."""
        return {"task_id": self.task_id, "url": self.url,
                "digest": self.digest, "length": self.length, "piece_size": self.piece_size,
                "etag": self.etag, "last_modified": self.last_modified, "digests": self.digests,
                "blocks": [self.blocks.get(n) for n in range(len(self.digests))],
                "state": self.state, "content_version": self.content_version}

    # persistence ----------------------------------------------------------------
    def save_meta(self) -> None:
        meta = {"url": redact_url(self.url), "length": self.length, "piece_size": self.piece_size,
                "etag": self.etag, "last_modified": self.last_modified,
                "content_version": self.content_version,
                "complete": self.state == DONE and self._all_cached(), "digests": self.digests,
                "digest": self.digest, "damaged": sorted(self.damaged)}
        if self.confirming and len(self.confirming) > len(self.digests):
            # A crash mid-cut: the next cut is still matched against the whole earlier copy.
            meta["confirming"] = self.confirming
        tmp = self.meta_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(meta))   # json.dump would run the pure-Python encoder, per piece
        os.replace(tmp, self.meta_path)

    def _all_cached(self) -> bool:
        """Every piece is here, good or known damaged (and so fetched again, alone)."""
        held = len(self.scheduler.supernode_pieces | self.damaged | self.checking)
        return held >= (self.piece_count or 0)

    def load_meta(self) -> Optional[dict]:
        try:
            with open(self.meta_path) as f:
                meta = json.load(f)
            size = os.path.getsize(self.data_path)
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or not isinstance(meta.get("digests"), list):
            return None
        meta["data_size"] = size
        meta["blocks"] = self._load_blocks(meta["digests"])
        return normalise_damaged(meta)

    def record_blocks(self, num: int, sha256_hex: str, blocks: List[str]) -> None:
        """Keep piece `num`'s block digests on disk (before the meta names the piece),
        bound to the digest of the piece they were cut with."""
        with open(self.blocks_path, "a") as f:
            f.write("%d %s %s\n" % (num, sha256_hex, "".join(blocks)))

    def drop_blocks(self) -> None:
        """The source is cut afresh: the block digests on disk are of other bytes."""
        try:
            os.remove(self.blocks_path)
        except OSError:
            pass

    def _load_blocks(self, digests: list) -> List[Optional[List[str]]]:
        """The block digests of the meta's pieces (None where unknown), aligned with
        its `digests`; the last line of a piece wins (it was cut again), and is used
        only if it names that piece's digest and its last block's digest is that
        digest (else its blocks are of other bytes, or were cut by a version-2
        supernode, which hashed each block alone)."""
        found: Dict[int, List[str]] = {}
        try:
            with open(self.blocks_path) as f:
                for line in f:
                    num, piece, joined = (line.strip().split(" ") + ["", ""])[:3]
                    if num.isdigit() and int(num) < len(digests) and HEX_DIGESTS.match(joined):
                        found[int(num)] = [piece] + [joined[i:i + 64] for i in range(0, len(joined), 64)]
        except (OSError, UnicodeDecodeError):
            pass
        return [found[n][1:] if n in found and found[n][0] == found[n][-1] == digests[n] else None
                for n in range(len(digests))]

    def summary(self) -> dict:
        return {"task_id": self.task_id, "url": self.url, "state": self.state,
                "length": self.length, "piece_size": self.piece_size,
                "pieces_written": len(self.digests), "piece_count": self.piece_count,
                "peers": len(self.scheduler.peers), "source_bytes": self.source_bytes,
                "served_bytes": self.served_bytes, "content_version": self.content_version,
                "error": self.error,
                "waiting": len(self._waiters), "repaired_pieces": self.repaired_pieces,
                "damaged_pieces": len(self.damaged), "discarded": dict(self.discarded),
                "bytes_within_zone": self.bytes_within_zone,
                "bytes_across_zones": self.bytes_across_zones}


def blocks_of(copy: dict) -> Dict[int, List[str]]:
    """The block digests a meta or replica carries (`blocks`: a list aligned with
    `digests`, None where unknown), as piece -> list; what is malformed, or does not
    end with its piece's digest, is left out (those pieces are then checked whole)."""
    listed, digests = copy.get("blocks"), copy.get("digests")
    digests = digests if isinstance(digests, list) else []
    out: Dict[int, List[str]] = {}
    for num, blocks in enumerate(listed if isinstance(listed, list) else ()):
        if isinstance(blocks, list) and blocks and all(isinstance(b, str) and HEX_DIGESTS.match(b)
                                                       and len(b) == 64 for b in blocks) \
                and num < len(digests) and blocks[-1] == digests[num]:
            out[num] = list(blocks)
    return out


def normalise_damaged(meta: dict) -> dict:
    """`meta["damaged"]` as a sorted list of piece numbers. A copy still being
    written resumes before its first damaged piece instead (the source is read
    from there anyway), so only a complete copy keeps a damaged list."""
    damaged = meta.get("damaged")
    count = len(meta["digests"])
    bad = sorted({n for n in damaged if isinstance(n, int) and 0 <= n < count}) \
        if isinstance(damaged, list) else []
    if bad and not meta.get("complete"):
        meta["digests"] = meta["digests"][:bad[0]]
        bad = []
    meta["damaged"] = bad
    return meta
