"""Which peer fetches which piece from whom, for one task. Pure policy.

Strategy (Dragonfly 1.x's, tightened so the supernode's egress stays near one
copy of the file):
- Pieces are offered rarest first: fewest peer holders, counting the copies
  already in flight, so that the first pieces each peer takes differ and the
  peers then have something to trade. Ties are broken by a hash of (peer,
  piece), which spreads peers over pieces without randomness. A peer that
  streams to stdout asks for pieces in order instead.
- A piece comes from a peer when some peer can serve it: alive, not the
  requester, not on the requester's blacklist, under max_holder_errors, and
  under max_uploads_per_peer. The least loaded such peer wins.
- The supernode serves a piece only when no peer has it or is fetching it, so
  each piece leaves the supernode about once; peers spread it from there. A
  requester with max_peer_failures failures is served by the supernode only.
- Peers not heard from for peer_ttl_s are forgotten with all they held; an
  assignment not reported within assignment_timeout_s is released.

No sockets, threads or clocks: every call that depends on time takes `now`.
"""
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

SUPERNODE = "supernode"


@dataclass(frozen=True)
class SchedulerConfig:
    max_uploads_per_peer: int = 5
    max_uploads_supernode: int = 64
    max_holder_errors: int = 5
    max_peer_failures: int = 5
    assignment_timeout_s: float = 60.0
    peer_ttl_s: float = 30.0
    piece_stall_s: float = 15.0


@dataclass(frozen=True)
class Assignment:
    piece: int
    holder: str


@dataclass
class PeerState:
    peer_id: str
    addr: Tuple[str, int]
    last_seen: float
    held: Set[int] = field(default_factory=set)
    inflight: Dict[int, Tuple[str, float]] = field(default_factory=dict)
    blacklist: Set[str] = field(default_factory=set)
    errors: int = 0      # as a holder: failures others reported against it
    failures: int = 0    # as a requester: pieces it failed to fetch
    uploads: int = 0     # assignments currently served by it


class TaskScheduler:
    def __init__(self, config: SchedulerConfig = SchedulerConfig()):
        self.config = config
        self.peers: Dict[str, PeerState] = {}
        self.supernode_pieces: Set[int] = set()
        self.supernode_uploads = 0
        self._holders: Dict[int, Set[str]] = {}
        self._incoming: Dict[int, int] = {}   # piece -> copies in flight to peers

    # events -----------------------------------------------------------------
    def piece_available(self, num: int) -> None:
        """The supernode's cache now holds piece `num`."""
        self.supernode_pieces.add(num)

    def peer_joined(self, peer_id: str, addr: Tuple[str, int], now: float) -> None:
        peer = self.peers.get(peer_id)
        if peer is None:
            self.peers[peer_id] = PeerState(peer_id, addr, now)
        else:
            peer.addr, peer.last_seen = addr, now

    def peer_seen(self, peer_id: str, now: float) -> bool:
        """Record a sign of life; False when the peer is unknown (forgotten)."""
        peer = self.peers.get(peer_id)
        if peer is None:
            return False
        peer.last_seen = now
        return True

    def peer_left(self, peer_id: str) -> None:
        peer = self.peers.pop(peer_id, None)
        if peer is None:
            return
        for num in list(peer.inflight):
            self._release(peer, num)
        for num in peer.held:
            self._holders.get(num, set()).discard(peer_id)
        for other in self.peers.values():
            for num, (holder, _) in list(other.inflight.items()):
                if holder == peer_id:
                    self._release(other, num)

    def piece_done(self, peer_id: str, num: int, now: float) -> None:
        peer = self.peers.get(peer_id)
        if peer is None:
            return
        peer.last_seen = now
        self._release(peer, num)
        peer.held.add(num)
        self._holders.setdefault(num, set()).add(peer_id)

    def piece_failed(self, peer_id: str, num: int, holder: str, now: float) -> None:
        """`peer_id` could not get piece `num` from `holder` (down, short, corrupt)."""
        peer = self.peers.get(peer_id)
        if peer is None:
            return
        peer.last_seen = now
        if peer.inflight.get(num, ("", 0))[0] == holder:
            self._release(peer, num)
        peer.failures += 1
        if holder != SUPERNODE:
            peer.blacklist.add(holder)
            bad = self.peers.get(holder)
            if bad is not None:
                bad.errors += 1

    def expire(self, now: float) -> List[str]:
        """Forget silent peers and release stale assignments; returns forgotten ids."""
        gone = [p.peer_id for p in self.peers.values()
                if now - p.last_seen > self.config.peer_ttl_s]
        for peer_id in gone:
            self.peer_left(peer_id)
        for peer in self.peers.values():
            for num, (_, since) in list(peer.inflight.items()):
                if now - since > self.config.assignment_timeout_s:
                    self._release(peer, num)
        return gone

    # queries ----------------------------------------------------------------
    def assign(self, peer_id: str, want: int, now: float,
               sequential: bool = False) -> List[Assignment]:
        """Up to `want` pieces for `peer_id`, each with the holder to fetch it from."""
        peer = self.peers.get(peer_id)
        if peer is None or want <= 0:
            return []
        peer.last_seen = now
        candidates = [n for n in self._known_pieces()
                      if n not in peer.held and n not in peer.inflight]
        if sequential:
            candidates.sort()
        else:
            candidates.sort(key=lambda n: (len(self._holders.get(n, ())) + self._incoming.get(n, 0),
                                           zlib.crc32(("%s:%d" % (peer_id, n)).encode())))
        out = []
        for num in candidates:
            if len(out) >= want:
                break
            holder = self._pick_holder(peer, num, now)
            if holder is not None:
                self._start(peer, num, holder, now)
                out.append(Assignment(num, holder))
        return out

    def holders_of(self, num: int) -> Set[str]:
        return set(self._holders.get(num, ()))

    def addr_of(self, holder: str) -> Optional[Tuple[str, int]]:
        peer = self.peers.get(holder)
        return peer.addr if peer else None

    def upload_load(self, holder: str) -> int:
        if holder == SUPERNODE:
            return self.supernode_uploads
        peer = self.peers.get(holder)
        return peer.uploads if peer else 0

    # internals ----------------------------------------------------------------
    def _known_pieces(self) -> Set[int]:
        if not self._holders:
            return self.supernode_pieces
        return self.supernode_pieces.union(n for n, h in self._holders.items() if h)

    def _usable_peers(self, peer: PeerState, num: int) -> List[PeerState]:
        out = []
        for holder_id in self._holders.get(num, ()):
            holder = self.peers.get(holder_id)
            if (holder is not None and holder_id != peer.peer_id
                    and holder_id not in peer.blacklist
                    and holder.errors < self.config.max_holder_errors):
                out.append(holder)
        return out

    def _pick_holder(self, peer: PeerState, num: int, now: float) -> Optional[str]:
        cfg = self.config
        if peer.failures < cfg.max_peer_failures:
            usable = self._usable_peers(peer, num)
            free = [h for h in usable if h.uploads < cfg.max_uploads_per_peer]
            if free:
                return min(free, key=lambda h: (h.uploads, h.peer_id)).peer_id
            if usable or self._fresh_supernode_copy(peer, num, now):
                return None   # a peer has it or soon will: wait rather than load the supernode
        if num in self.supernode_pieces and self.supernode_uploads < cfg.max_uploads_supernode:
            return SUPERNODE
        return None

    def _fresh_supernode_copy(self, peer: PeerState, num: int, now: float) -> bool:
        """Is another healthy peer fetching `num` from the supernode right now?"""
        for other in self.peers.values():
            if other is peer or other.peer_id in peer.blacklist:
                continue
            if other.errors >= self.config.max_holder_errors:
                continue
            holder, since = other.inflight.get(num, ("", 0.0))
            if holder == SUPERNODE and now - since <= self.config.piece_stall_s:
                return True
        return False

    def _start(self, peer: PeerState, num: int, holder: str, now: float) -> None:
        peer.inflight[num] = (holder, now)
        self._incoming[num] = self._incoming.get(num, 0) + 1
        if holder == SUPERNODE:
            self.supernode_uploads += 1
        else:
            self.peers[holder].uploads += 1

    def _release(self, peer: PeerState, num: int) -> None:
        holder, _ = peer.inflight.pop(num, (None, 0))
        if holder is None:
            return
        self._incoming[num] = max(0, self._incoming.get(num, 1) - 1)
        if holder == SUPERNODE:
            self.supernode_uploads = max(0, self.supernode_uploads - 1)
        elif holder in self.peers:
            self.peers[holder].uploads = max(0, self.peers[holder].uploads - 1)
