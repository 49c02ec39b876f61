"""Which peer fetches which piece from whom, for one task. Pure policy.

Strategy (Dragonfly 1.x's, tightened so the supernode's egress stays near one
copy of the file):
- Pieces are offered rarest first: fewest peer holders, counting the copies
  already in flight, so that the first pieces each peer takes differ and the
  peers then have something to trade. Among equally rare pieces the earlier
  window of TIE_WINDOW pieces goes first, so the supernode hands out fresh
  pieces roughly in file order and every peer's verified prefix grows while it
  downloads (its whole-file digest is hashed along, not all at the end);
  within a window ties are broken by a hash of (peer, piece), which spreads
  peers over pieces without randomness. A peer that streams to stdout asks
  for pieces in order instead.
- Cost per assign() stays near O(pieces) however many peers there are (a
  supernode answers a thousand peers of one task under one lock): candidates
  go into a heap and are popped only until `want` are placed, the tie-break
  hash is integer arithmetic, and "is someone already fetching this piece from
  the supernode?" is an index lookup, not a scan of every peer. Peers that
  hold something and have a free upload slot are indexed by their load, so
  the least loaded holder of a piece is a set intersection, not a scan of its
  holders (a thousand once a piece has spread). While the supernode's slots
  are all taken (most of a busy swarm's calls), only pieces that such peers
  hold are candidates: the others would find no holder anyway, so the answer
  is the same and neither the heap nor the holder search sees them.
- A piece comes from a peer when some peer can serve it: alive, not the
  requester, not on the requester's blacklist, under max_holder_errors, under
  max_uploads_per_peer, and reachable: a peer registered with an IPv4 address
  is never sent to one registered with an IPv6 address, nor the other way
  round (an IPv4-only host cannot connect to an IPv6-only one; a dual-stack
  supernode serves both, and each family trades within itself; a peer known
  by a host name may be either). The least loaded such peer wins; but first,
  when peers gave their location (region/zone/rack), the one sharing the
  longest prefix of it with the requester: a piece enters a rack or zone about
  once and spreads inside it. A far holder with a free slot still serves when
  every near one is busy; but not while a copy is on its way to a peer of the
  requester's own zone (live: from the supernode, as for a copy waited for
  below; from a peer, begun within piece_stall_s): that copy will serve it,
  so a piece crosses into a zone about once even when the whole file is in
  flight at the start of a swarm.
- The supernode serves a piece only when no peer has it or is fetching it, so
  each piece leaves the supernode about once; peers spread it from there. Its
  upload slot is free again once the piece is sent (`supernode_sent`: out on
  the wire, or a few seconds on its way to a peer that does not keep up:
  httpd's Watches, against the pace of the supernode's other streams), while
  the piece still counts as on its way to that peer until it is reported. A
  requester with max_peer_failures failures is served by the supernode only.
- Nobody holds the supernode up: a fetch from it not begun within
  start_timeout_s frees its slot, a send that broke (`supernode_send_failed`)
  frees the piece, and another peer's copy is worth waiting for only while it
  is under way and not stalled: begun, and then for as long as it takes (the
  supernode watches the stream and says when its reader lags or the send
  broke; a bound in seconds took slow links for stalled ones), and once sent
  whole, reported within sent_grace_s, or half the time its sending took if
  longer (the last bytes of a slow stream take seconds to arrive).
- Cut-through (`cut_through`; on unless the supernode's --no-cut-through):
  a peer still fetching a piece serves its verified blocks as they land
  (peer/uploader.py), so when no peer the requester can use holds the piece
  whole, a peer fetching it (a relay) serves it before the supernode does and
  before anyone waits: a fresh piece then spreads a block behind its source,
  not one whole piece per hop. A busy whole copy is waited for instead: it
  frees its slot in a piece's time, where a relay goes at its own source's
  pace (measured: relaying there too made the end of a swarm slower). A
  relay in another zone is not used while a copy is on its way into the
  requester's own zone (as a far whole copy is not: with relays on, labelled
  swarms crossed zones twice as often without this). A
  relay qualifies while its own fetch is live (from a peer: assigned within
  piece_stall_s; from the supernode: begun, as the supernode saw, and fresh as a supernode
  copy waited for; a peer that claims pieces and never fetches them is no
  relay), with a free upload slot, and itself fed by the supernode or a whole
  copy, not by another relay; nearest, least loaded, earliest begun first,
  among the first RELAY_SCAN fetchers of the piece. No chains of relays: on
  the testbed a chain goes at its slowest link's pace, each block a hand-off
  between the threads of busy processes (8 hosts, medians of 3: 8.2 s with
  chains, 7.6 s without, as whole pieces; docs/BENCHMARKS.md), though the
  simulator, which sees no CPU, likes them for pieces of 2 MiB and more
  (relay_chains allows them; a relay is then never fed by its requester,
  however long the chain). A relay that stopped because its own source
  failed it ("relay stopped", or a 404 once its fetch was dropped) is not
  blamed: the requester gets no relay for that piece again, and no one
  is sent to that relay for it until its own fetch of it ends. A bad block
  from a relay is the relay's (it passes on only blocks it verified).
  A fetch from a relay fed by a whole copy takes one of the requester's
  download slots like any other unless free_relay_slots (`frees_slot`: the
  order then says `relay` and the peer asks for another piece beside it).
  bench/swarm_sim.py shows why it takes one: without the fan-out below, a
  requester running twice its slots splits its link eight ways, the
  supernode's own flows into it slow down with the rest, the supernode's
  link (the swarm's bottleneck) is no longer full, and the swarm ends 12-17 %
  later (8 and 16 hosts, 1-4 MiB).
- The fan-out (`fanout`, with cut-through, in a swarm of at most `fanout`
  peers; mutualcast): the supernode feeds a different piece to each peer at
  once (its slots grow to the number of peers n, and a requester takes at
  most its share of them: one each once there are as many peers as slots,
  all of them when alone), a relay fed by the supernode serves its piece to
  up to n - 1 peers (past max_uploads_per_peer), and a fetch from such a
  relay holds no download slot (`frees_slot`; the peer runs up to
  --parallel + RELAY_FETCHES fetches). Every peer then uploads from the
  start: one stream in from the supernode at R/n, n - 1 relayed streams in
  at R/n each, n - 1 out; every link full. A fed relay takes no more
  streams than the supernode has going (but max_uploads_per_peer): with
  fewer, each would go at the relay's uplink's pace, slower than the
  supernode's. That happens in the final round (`piece_count` known, every
  piece held by a peer or on its way to one) when n does not divide the
  number of pieces: its few pieces would reach everyone through a few
  uplinks; so there a peer relaying a fed relay's stream may pass it on,
  one hop more and no further (4 MiB pieces, 14-15 hosts: 8.2-8.3 s
  without, 7.0-7.2 s with). Past `fanout` peers the fan-out is off: some
  peers would get no stream of their own and the fed ones could not pass
  theirs to everyone (24 and 32 hosts: 7.6-7.7 s with it capped at 16,
  6.6 s without). Without the fan-out, only the 4 peers the supernode's 4
  slots fed had anything to pass on until a first piece was whole (a relay
  fed by a relay is no relay), each could pass it to 4: 5 uplinks of 17
  busy, the hosts' downlinks 19 / 37 % busy in the first two quarter
  seconds (swarm_sim, 16 hosts, 1 MiB, goodput 0.94). Raising the knobs
  alone did not form it (16 slots, 16 uploads, --parallel 16, free relay
  slots: 7.51 s, not 6.61): the first callers took 2-3 of the supernode's
  slots each, so 7 peers fed 16 streams, and each peer could take only so
  many relays. The fan-out: 6.20 s (8 hosts 5.98 s, from 6.26); 2 and 4 MiB
  pieces gain most (16 hosts: 7.27 -> 6.32 s, 8.24 -> 6.57 s). What it
  still costs is its pipe: a relay is one verified block behind its
  source, so n streams at R/n are n blocks in flight, paid at the start
  and drained at the end: ~0.36 s at 16 hosts at 100 Mbit/s with 256 KiB
  blocks, so 1 MiB pieces now have blocks of 64 KiB (pieces.py; 6.20 ->
  5.94 s, 8 hosts 5.98 -> 5.84 s). Fewer, faster streams relayed over more
  than one hop would shorten it too (relay_chains, which the testbed did not
  like). And its final round
  still: over 2-16 hosts, 64 MiB, the mean of the last host is 6.22 s
  against 6.26 s before it with 1 MiB pieces (but 0.1-0.23 s slower at 3,
  11, 12, 14 and 15 hosts), 6.36 against 6.72 s with 2 MiB, 6.64 against
  7.75 s with 4 MiB (never slower at 2 and 4 MiB). Whole pieces (no
  cut-through) keep the supernode's own slots: with nothing to relay, 16
  slots only slow every first piece.
- A holder some peer reported failing is suspect: no one is sent to it until
  it is heard from again (a seeder heartbeats; a stopped one stays suspect).
- Peers not heard from for peer_ttl_s are forgotten with all they held (pieces
  others are fetching from them stay theirs until reported: the fetch is still
  running there); an assignment not reported within assignment_timeout_s is
  released, unless the supernode is still sending it (or sending it to the
  relay it comes from): a slow link's fan-out stream can take minutes, and
  the supernode tells when it ends or breaks (stream_timeout_s is the net).
  A requester holds at most max_assignments_per_peer unreported assignments
  (one that asks for many and never fetches holds few slots). What a reply
  the requester never heard assigned (its call timed out: links full of the
  swarm's pieces can hold a reply longer than any fixed timeout) is released
  at its next call, which names the last reply it heard (`replies_heard`).

No sockets, threads or clocks: every call that depends on time takes `now`.
"""
import heapq
import zlib
from dataclasses import dataclass, field
from typing import AbstractSet, Dict, List, Optional, Set, Tuple

from dfly.protocol.address import address_family
from dfly.protocol.location import ZONE_LABELS, Location
from dfly.protocol.messages import SUPERNODE, relay_blameless

TIE_WINDOW = 8   # pieces; see "rarest first" above
RELAY_SCAN = 32  # fetchers of a piece looked at for a relay: bounds a call's cost in big swarms
RELAY_DEPTH = 8  # relays of relays followed back, to find a loop
REPLIES_KEPT = 8  # a peer's replies not yet known heard or lost (one or two, but for a bad peer)
_NOBODY: AbstractSet[str] = frozenset()


@dataclass(frozen=True)
class SchedulerConfig:
    max_uploads_per_peer: int = 4
    max_uploads_supernode: int = 4
    max_holder_errors: int = 5
    max_peer_failures: int = 5
    assignment_timeout_s: float = 60.0
    stream_timeout_s: float = 600.0   # ... or, for one the supernode still sends, this (a safety net)
    max_assignments_per_peer: int = 16
    peer_ttl_s: float = 30.0
    piece_stall_s: float = 15.0
    start_timeout_s: float = 5.0   # a fetch from the supernode not begun by then frees its slot
    sent_grace_s: float = 2.0      # a piece sent whole yet unreported by then: its reader is slow
    sent_grace_share: float = 0.5  # ... or by this share of its send's time, if longer (a slow stream)
    prefer_near: bool = True       # among free holders, the one sharing most of the requester's location
    cut_through: bool = True       # a peer still fetching a piece may serve it (a relay)
    free_relay_slots: bool = False  # a fetch from a relay holds none of the requester's slots
    relay_chains: bool = False     # a relay may itself be fed by a relay (see the opening)
    fanout: int = 16               # swarms up to this: each peer fed a piece at once, relays it (0: off)


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
    from_supernode: int = 0   # supernode slots its fetches hold
    relayed: Set[int] = field(default_factory=set)    # pieces it fetches from a relay
    replies: Dict[int, List[Tuple[int, float]]] = field(default_factory=dict)   # call: (piece, when)
    #   assigned in the reply to its numbered call, until a later call says whether it came
    answered: int = 0    # its last numbered call answered (repeats_answered)
    reported: int = 0    # its reporter's last numbered call (report_call_came)
    fanned: Set[int] = field(default_factory=set)     # of those, from a relay the supernode feeds
    no_relay: Set[int] = field(default_factory=set)   # pieces a relay failed it on: no relay again
    family: Optional[int] = None   # 4 or 6 when registered with an IP address
    location: Location = ()        # ('region', 'zone', 'rack'), () when not given
    # For the dashboard (supernode/dashboard.py): where its bytes came from, and when.
    joined_at: float = 0.0
    bytes_from_supernode: int = 0
    bytes_from_peers: int = 0
    last_piece_at: float = 0.0


class TaskScheduler:
    def __init__(self, config: SchedulerConfig = SchedulerConfig()):
        self.config = config
        self.peers: Dict[str, PeerState] = {}
        self.supernode_pieces: Set[int] = set()
        self.supernode_uploads = 0
        self.piece_count: Optional[int] = None   # the file's, once the supernode knows its length
        self._final = False   # every piece on its way to or held by a peer (as of this assign)
        self._holders: Dict[int, Set[str]] = {}
        self._incoming: Dict[int, int] = {}   # piece -> copies in flight to peers
        self._peer_held: Set[int] = set()     # pieces at least one peer holds
        self._from_supernode: Dict[int, Dict[str, float]] = {}   # piece -> {peer: since}
        self._fetching: Dict[int, Dict[str, float]] = {}   # piece -> {peer: since}, from anyone
        self._stuck: Set[Tuple[str, int]] = set()   # (peer, piece): it stopped relaying it
        self._sent: Set[Tuple[str, int]] = set()   # (peer, piece): its supernode slot is free again
        self._sent_at: Dict[Tuple[str, int], float] = {}   # (peer, piece): when sent whole
        self._started: Dict[Tuple[str, int], float] = {}   # (peer, piece) -> when its fetch from us began
        self._slow: Set[Tuple[str, int]] = set()   # (peer, piece): its reader is too slow to wait for
        self._suspect: Set[str] = set()   # holders reported failing, not heard from since
        # _free[k]: peers holding a piece with k uploads going, k < max_uploads_per_peer
        # (only loads some peer has: any cap, however large, costs nothing here)
        self._free: Dict[int, Set[str]] = {}
        self._load_of: Dict[str, int] = {}   # the _free key each peer is filed under
        self._bad: Set[str] = set()    # peers at max_holder_errors: no longer asked to serve
        self._family: Dict[int, Set[str]] = {4: set(), 6: set()}   # peers by address family
        self._located: Dict[Location, Set[str]] = {}   # every prefix of a location -> its peers
        # (zone, piece) -> {peer: since}: copies on their way to a peer of that zone
        self._coming: Dict[Tuple[Location, int], Dict[str, float]] = {}
        self._coming_key: Dict[Tuple[str, int], Tuple[Location, int]] = {}   # (peer, piece) -> its key
        # (peer, piece) -> is it fetched within its zone? (both located; a holder may leave first)
        self._within_zone: Dict[Tuple[str, int], bool] = {}

    # events -----------------------------------------------------------------
    def piece_available(self, num: int, count: Optional[int] = None) -> None:
        """The supernode's cache now holds piece `num` (of `count`, when the length
        is known)."""
        self.supernode_pieces.add(num)
        if count is not None:
            self.piece_count = count

    def piece_unavailable(self, num: int) -> None:
        """The supernode's copy of `num` is suspect or bad: no longer offered."""
        self.supernode_pieces.discard(num)

    def piece_lost(self, peer_id: str, num: int) -> None:
        """`peer_id`'s copy of `num` was found bad: no longer offered from it (until
        it reports the piece done again)."""
        peer = self.peers.get(peer_id)
        if peer is None or num not in peer.held:
            return
        peer.held.discard(num)
        holders = self._holders.get(num)
        if holders is not None:
            holders.discard(peer_id)
            if not holders:
                self._peer_held.discard(num)
        self._file_by_load(peer)

    def peer_joined(self, peer_id: str, addr: Tuple[str, int], now: float,
                    location: Location = ()) -> None:
        peer = self.peers.get(peer_id)
        if peer is None:
            peer = self.peers[peer_id] = PeerState(peer_id, addr, now, joined_at=now)
        else:
            peer.addr = addr
            self._heard_from(peer, now)
            self._family.get(peer.family, set()).discard(peer_id)
        self._unlocate(peer)
        peer.location = location
        for depth in range(1, len(location) + 1):
            self._located.setdefault(location[:depth], set()).add(peer_id)
        peer.family = address_family(addr[0])
        self._family.get(peer.family, set()).add(peer_id)

    def peer_seen(self, peer_id: str, now: float) -> bool:
        """Record a sign of life; False when the peer is unknown (forgotten)."""
        peer = self.peers.get(peer_id)
        if peer is None:
            return False
        self._heard_from(peer, now)
        return True

    def peer_left(self, peer_id: str) -> None:
        peer = self.peers.pop(peer_id, None)
        if peer is None:
            return
        self._unfile(peer_id)
        self._bad.discard(peer_id)
        self._suspect.discard(peer_id)
        self._family.get(peer.family, set()).discard(peer_id)
        self._unlocate(peer)
        for num in list(peer.inflight):
            self._release(peer, num)
        for num in peer.held:
            holders = self._holders.get(num)
            if holders is not None:
                holders.discard(peer_id)
                if not holders:
                    self._peer_held.discard(num)
        # Pieces others fetch from it stay assigned to them: their fetch is still
        # running (a stopped holder keeps it hanging) and they report its end. Planned
        # again now, the piece would go to a peer that ignores it while its own fetch
        # runs, and hold a supernode slot until the assignment timed out.

    def piece_done(self, peer_id: str, num: int, now: float) -> None:
        peer = self.peers.get(peer_id)
        if peer is None:
            return
        self._heard_from(peer, now)
        self._release(peer, num)
        peer.no_relay.discard(num)
        peer.held.add(num)
        self._holders.setdefault(num, set()).add(peer_id)
        self._peer_held.add(num)
        self._file_by_load(peer)

    def piece_failed(self, peer_id: str, num: int, holder: str, now: float, reason: str = "") -> None:
        """`peer_id` could not get piece `num` from `holder` (down, short, corrupt)."""
        peer = self.peers.get(peer_id)
        if peer is None:
            return
        self._heard_from(peer, now)
        assigned = peer.inflight.get(num, ("", 0))[0] == holder
        relayed = assigned and num in peer.relayed
        if assigned:
            self._release(peer, num)
        if relayed and relay_blameless(reason):
            peer.no_relay.add(num)   # its source failed the relay: a whole copy next time
            self._stuck.add((holder, num))   # and no one else is sent to that fetch of it
            return
        peer.failures += 1
        if holder != SUPERNODE:
            peer.blacklist.add(holder)
            bad = self.peers.get(holder)
            # Only a failure of a piece we told it to fetch from that holder counts
            # against the holder for everyone: anyone can register and report.
            if bad is not None and assigned:
                bad.errors += 1
                if bad.errors >= self.config.max_holder_errors:
                    self._bad.add(holder)
                self._suspect.add(holder)   # for everyone, until it shows it lives
                self._unfile(holder)

    def supernode_started(self, peer_id: str, num: int, now: float) -> None:
        """`peer_id` began fetching `num` from the supernode."""
        peer = self.peers.get(peer_id)
        if peer is not None and peer.inflight.get(num, ("", 0))[0] == SUPERNODE:
            self._started.setdefault((peer_id, num), now)

    def supernode_sent(self, peer_id: str, num: int, now: Optional[float] = None,
                       slow: bool = False) -> bool:
        """The supernode sent all of `num` to `peer_id`, or (`slow`) gave up waiting
        for a reader that takes it too slowly: its upload slot is free, though the
        piece still counts as on its way to that peer until reported (but, from a
        slow reader, as no copy worth waiting for). False when there is no such
        assignment (or it was counted already)."""
        peer = self.peers.get(peer_id)
        if peer is None or peer.inflight.get(num, ("", 0))[0] != SUPERNODE \
                or (peer_id, num) in self._sent:
            return False
        self._free_slot(peer_id, num)
        if slow:
            self._slow.add((peer_id, num))
        elif now is not None:
            self._sent_at[(peer_id, num)] = now
        return True

    def supernode_send_failed(self, peer_id: str, num: int) -> bool:
        """The supernode could not send `num` to `peer_id` (it died or stopped
        reading): the assignment is released. False when there was none."""
        peer = self.peers.get(peer_id)
        if peer is None or peer.inflight.get(num, ("", 0))[0] != SUPERNODE:
            return False
        self._release(peer, num)
        return True

    def reply_made(self, peer_id: str, call: int, assignments: List[Assignment], now: float) -> None:
        """The reply to `peer_id`'s numbered call `call` assigns `assignments`."""
        peer = self.peers.get(peer_id)
        if peer is None or not call:
            return
        peer.answered = call
        if assignments:
            peer.replies[call] = [(a.piece, now) for a in assignments]
            while len(peer.replies) > REPLIES_KEPT:   # a peer numbering its calls backwards
                del peer.replies[min(peer.replies)]

    def repeats_answered(self, peer_id: str, call: int, heard: int) -> bool:
        """Does `peer_id`'s numbered call `call` repeat one already answered? Its
        calls go one at a time, and one is made again only when its reply was lost
        (downloader.ask_again), with the same reports: a call that has not heard the
        reply to the last call answered is that call again, and its failures were
        counted then (counted twice, the requester's failures, the metrics and a bad
        copy's discards went up twice). The last call answered, come again, is a
        repeat too (a request sent twice); one numbered below it starts a new count
        (the peer's download started over)."""
        peer = self.peers.get(peer_id)
        if peer is None or not call or call < peer.answered:
            return False
        return call == peer.answered or heard < peer.answered

    def report_call_came(self, peer_id: str, report_call: int) -> bool:
        """`peer_id`'s reporter call numbered `report_call` came: is it the last one it
        made, again (its reply was lost, and it came again with the same number and
        reports)? The number is recorded. The reporter's calls go one at a time beside
        the coordinator's, so they have a count of their own; any other number is a
        new call (one below the last: the peer's download started over)."""
        peer = self.peers.get(peer_id)
        if peer is None or not report_call:
            return False
        again, peer.reported = report_call == peer.reported, report_call
        return again

    def replies_heard(self, peer_id: str, call: int, heard: int) -> Set[str]:
        """`peer_id`'s numbered call `call` says the last reply it heard was to call
        `heard`. Its calls are made one at a time, so each earlier one is over: what
        the replies it never heard assigned (a call that timed out, made again as a new
        call) is released, else it would wait for assignment_timeout_s. Returns the
        holders that got a slot back."""
        peer = self.peers.get(peer_id)
        if peer is None or not call:
            return set()
        freed = set()
        for earlier in [c for c in peer.replies if c < call]:
            pieces = peer.replies.pop(earlier)
            if earlier == heard:
                continue
            for num, when in pieces:
                holder, since = peer.inflight.get(num, ("", -1.0))
                if since == when:   # still that assignment, not a later one
                    self._release(peer, num)
                    freed.add(holder)
        return freed

    def expire(self, now: float) -> List[str]:
        """Forget silent peers, free the supernode slots of fetches never begun, and
        release stale assignments; returns forgotten ids."""
        gone = [p.peer_id for p in self.peers.values()
                if now - p.last_seen > self.config.peer_ttl_s]
        for peer_id in gone:
            self.peer_left(peer_id)
        for peer in self.peers.values():
            for num, (holder, since) in list(peer.inflight.items()):
                if now - since > self.config.assignment_timeout_s \
                        and (now - since > self.config.stream_timeout_s
                             or not self._streaming(peer.peer_id, num, holder)):
                    self._release(peer, num)
                elif holder == SUPERNODE and now - since > self.config.start_timeout_s \
                        and (peer.peer_id, num) not in self._started \
                        and (peer.peer_id, num) not in self._sent:
                    self._free_slot(peer.peer_id, num)
        return gone

    def _streaming(self, peer_id: str, num: int, holder: str) -> bool:
        """Is the supernode still sending `num` to `peer_id` (begun, not yet sent,
        its reader not found slow), or to the relay `peer_id` fetches it from? Such
        a fetch outlives assignment_timeout_s: the supernode tells when it ends or
        breaks, and one of the fan-out's 16 streams on a slow link takes minutes
        (a 4 MiB piece at 6.25 Mbit/s: 86 s)."""
        if holder != SUPERNODE:
            relay = self.peers.get(holder)
            if relay is None or relay.inflight.get(num, ("", 0))[0] != SUPERNODE:
                return False
            peer_id = holder
        key = (peer_id, num)
        return key in self._started and key not in self._sent and key not in self._slow

    # queries ----------------------------------------------------------------
    def assign(self, peer_id: str, want: int, now: float,
               sequential: bool = False) -> List[Assignment]:
        """Up to `want` pieces for `peer_id`, each with the holder to fetch it from."""
        peer = self.peers.get(peer_id)
        want = min(want, self.config.max_assignments_per_peer - len(peer.inflight)) if peer else 0
        if peer is None or want <= 0:
            return []
        self._heard_from(peer, now)
        self._final = self._fanout() > 0 and self._all_begun()
        return self._assign_from(peer, want, now, sequential, self._candidates(peer))

    def _candidates(self, peer: PeerState) -> List[int]:
        """The pieces `peer` neither holds nor fetches that might find a holder now."""
        held, inflight = peer.held, peer.inflight
        cfg = self.config
        pool = self._known_pieces()
        free = self._free.values()
        if self.supernode_uploads >= self._supernode_slots() and sum(map(len, free)) <= len(pool):
            # Only a peer with a free slot can serve now: what such peers hold (none,
            # to a requester that may use the supernode only). With more such peers
            # than pieces, the unions would cost more than they save.
            pool, everything = set(), len(self._peer_held)
            if peer.failures < cfg.max_peer_failures:
                for holder_id in set().union(*free) - peer.blacklist - self._bad - self._unreachable(peer):
                    if holder_id != peer.peer_id:
                        pool |= self.peers[holder_id].held
                        if len(pool) >= everything:
                            break
                if cfg.cut_through:   # and what relays could pass on
                    pool |= self._fetching.keys()
        return [n for n in pool if n not in held and n not in inflight]

    def _assign_from(self, peer: PeerState, want: int, now: float, sequential: bool,
                     candidates: List[int]) -> List[Assignment]:
        if sequential:
            candidates.sort()
            order = iter(candidates)
        else:
            holders, incoming = self._holders, self._incoming
            salt = zlib.crc32(peer.peer_id.encode())
            keyed = [(len(holders.get(n, ())) + incoming.get(n, 0), n // TIE_WINDOW, _mix(n, salt), n)
                     for n in candidates]
            heapq.heapify(keyed)   # pop in order only as far as needed: usually `want` pops
            order = (heapq.heappop(keyed)[3] for _ in range(len(keyed)))
        out = []
        for num in order:
            if len(out) >= want:
                break
            holder = self._pick_holder(peer, num, now)
            if holder is not None:
                self._start(peer, num, holder, now)
                out.append(Assignment(num, holder))
        return out

    def fetched_within_zone(self, peer_id: str, num: int) -> Optional[bool]:
        """Is `peer_id`'s assigned fetch of `num` from a peer of its own zone? None when
        from the supernode, unassigned, or either end gave no location."""
        return self._within_zone.get((peer_id, num))

    def relayed_to(self, peer_id: str, num: int) -> bool:
        """Is `peer_id` assigned `num` from a relay (a holder still fetching it)?"""
        peer = self.peers.get(peer_id)
        return peer is not None and num in peer.relayed

    def frees_slot(self, peer_id: str, num: int) -> bool:
        """Does `peer_id`'s assigned fetch of `num` leave its download slot free? A
        fetch from a relay the supernode feeds (the fan-out), or from any relay with
        free_relay_slots (the opening says why)."""
        peer = self.peers.get(peer_id)
        if peer is None:
            return False
        return num in peer.fanned or (self.config.free_relay_slots and num in peer.relayed)

    def holders_of(self, num: int) -> Set[str]:
        return set(self._holders.get(num, ()))

    def holder_count(self, num: int) -> int:
        """How many peers hold piece `num` (no copy of the set: the dashboard asks per piece)."""
        return len(self._holders.get(num, ()))

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
        if not self._peer_held:
            return self.supernode_pieces
        return self.supernode_pieces | self._peer_held

    def _pick_holder(self, peer: PeerState, num: int, now: float) -> Optional[str]:
        cfg = self.config
        if peer.failures < cfg.max_peer_failures:
            holders = self._holders.get(num, set())
            unusable = (self._bad | self._suspect) if self._suspect else self._bad
            skip = (peer.blacklist | unusable) if peer.blacklist else unusable
            unreachable = self._unreachable(peer)
            if unreachable:
                skip = skip | unreachable
            near = self._nearest_free(peer, holders, skip)
            if near is not None and not self._coming_to_zone_instead(peer, near, num, now):
                return near
            if near is not None:
                return None   # a copy is on its way into the requester's zone: wait for it
            if any(h != peer.peer_id and h not in skip for h in holders):
                return None   # a whole copy will free a slot: faster than any relay of it
            relay = self._relay_for(peer, num, now, skip) if cfg.cut_through else None
            if relay is not None and self._coming_to_zone_instead(peer, relay, num, now):
                return None   # as for a whole copy: the one coming into the zone will serve it
            if relay is not None:
                return relay
            if self._fresh_supernode_copy(peer, num, now):
                return None   # a peer soon has it: wait rather than load the supernode
        if num in self.supernode_pieces and self.supernode_uploads < self._supernode_slots() \
                and self._supernode_share_left(peer):
            return SUPERNODE
        return None

    def _fanout(self) -> int:
        """How many peers the fan-out spans now: each gets its own stream from the
        supernode and passes it on to the rest (0 when off: it needs relays)."""
        if not self.config.cut_through or len(self.peers) > self.config.fanout:
            return 0
        return len(self.peers)

    def _all_begun(self) -> bool:
        """Is every piece of the file held by a peer or on its way to one (the
        supernode has nothing left to start a stream with)?"""
        count = self.piece_count
        if not count or len(self._peer_held) + len(self._fetching) < count:
            return False
        return len(self._peer_held | self._fetching.keys()) >= count

    def _supernode_slots(self) -> int:
        return max(self.config.max_uploads_supernode, self._fanout())

    def _relay_slots(self, source: str) -> int:
        """Uploads a relay may take of a piece that comes to it from `source`."""
        if source == SUPERNODE:
            return max(self.config.max_uploads_per_peer, min(self._fanout() - 1, self.supernode_uploads))
        return self.config.max_uploads_per_peer

    def _supernode_share_left(self, peer: PeerState) -> bool:
        """May `peer` take one more of the supernode's slots? With the fan-out on,
        its share of them (one each once there are as many peers as slots)."""
        if peer.from_supernode == 0 or not self._fanout():
            return True
        share = -(-self._supernode_slots() // max(1, len(self.peers)))
        return peer.from_supernode < share

    def _nearest_free(self, peer: PeerState, holders: AbstractSet[str],
                      skip: AbstractSet[str]) -> Optional[str]:
        """The usable holder with a free slot sharing most of `peer`'s location, then
        the least loaded (ties by id); None when every usable holder is busy. Peers
        are indexed by each prefix of their location: a set intersection per label,
        not a comparison per holder."""
        here = peer.location if self.config.prefer_near else ()
        for depth in range(len(here), 0, -1):
            group = self._located.get(here[:depth], _NOBODY)
            near = (group & holders) if len(group) < len(holders) else (holders & group)
            near.discard(peer.peer_id)
            if near:
                found = self._least_loaded(peer, near, skip)
                if found is not None:
                    return found
        return self._least_loaded(peer, holders, skip)

    def _least_loaded(self, peer: PeerState, holders: AbstractSet[str],
                      skip: AbstractSet[str]) -> Optional[str]:
        for load in sorted(self._free):   # the least loaded usable holder (ties by id)
            bucket = self._free[load]
            found = (bucket & holders) if len(bucket) < len(holders) else (holders & bucket)
            found.discard(peer.peer_id)
            found -= skip
            if found:
                return min(found)
        return None

    def _coming_to_zone_instead(self, peer: PeerState, holder_id: str, num: int, now: float) -> bool:
        """Is `holder_id` outside `peer`'s zone while a fresh copy of `num` is coming
        to another peer of that zone?"""
        zone = peer.location[:ZONE_LABELS]
        if not zone or not self.config.prefer_near or self.peers[holder_id].location[:ZONE_LABELS] == zone:
            return False
        coming = self._coming.get((zone, num))
        return bool(coming) and any(self._live(other, num, since, now)
                                    for other, since in coming.items() if other != peer.peer_id)

    def _live(self, peer_id: str, num: int, since: float, now: float) -> bool:
        """Is `peer_id`'s fetch of `num` (assigned at `since`) under way and not stalled?
        From the supernode: as the supernode sees its stream (_live_supernode_fetch);
        from a peer: assigned within piece_stall_s (no one here sees that stream)."""
        peer = self.peers.get(peer_id)
        if peer is not None and peer.inflight.get(num, ("", 0))[0] == SUPERNODE:
            return self._live_supernode_fetch(peer_id, num, since, now)
        return now - since <= self.config.piece_stall_s

    def _fresh_supernode_copy(self, peer: PeerState, num: int, now: float) -> bool:
        """Is another healthy peer `peer` can reach fetching `num` from the supernode right now?"""
        cfg = self.config
        unreachable = self._unreachable(peer)
        for other_id, since in self._from_supernode.get(num, {}).items():
            if other_id == peer.peer_id or other_id in peer.blacklist or other_id in unreachable:
                continue
            other = self.peers.get(other_id)
            if other is None or other.errors >= cfg.max_holder_errors:
                continue
            if self._live_supernode_fetch(other_id, num, since, now):
                return True
        return False

    def _live_supernode_fetch(self, peer_id: str, num: int, since: float, now: float) -> bool:
        """Is `peer_id`'s fetch of `num` from the supernode (assigned at `since`) under way?
        Once begun, for as long as it takes: the supernode watches the stream and tells
        when it is sent, breaks, or its reader lags (supernode_sent, _send_failed). A
        bound in seconds took healthy streams for stalled where a piece takes long: a
        slow link, shared by the fan-out's 16 streams (4 MiB at 25 Mbit/s: 21 s)."""
        cfg = self.config
        key = (peer_id, num)
        sent_at = self._sent_at.get(key)
        if key in self._slow:
            return False       # its reader takes it too slowly to wait for
        if sent_at is not None:
            return now - sent_at <= self._grace(key, sent_at)   # else it has the bytes, yet no report
        if key in self._started:
            return now - since <= cfg.stream_timeout_s   # (a safety net: the supernode tells)
        return now - since <= cfg.start_timeout_s   # else it never began

    def _grace(self, key: Tuple[str, int], sent_at: float) -> float:
        """How long a piece the supernode sent to a peer may go unreported: the send
        leaves up to httpd's UNSENT_BYTES, and what is in flight, still on their way,
        which on one of the fan-out's 16 streams at 6.25 Mbit/s takes ~3 s."""
        cfg = self.config
        return max(cfg.sent_grace_s, cfg.sent_grace_share * (sent_at - self._started.get(key, sent_at)))

    def _relay_for(self, peer: PeerState, num: int, now: float, skip: AbstractSet[str]) -> Optional[str]:
        """A peer fetching `num` that can serve it to `peer` as it arrives (cut-through):
        the nearest, then least loaded, then earliest begun; None when there is none."""
        fetching = self._fetching.get(num)
        if not fetching or num in peer.no_relay:
            return None
        cfg = self.config
        best, best_key = None, None
        for seen, (other_id, since) in enumerate(fetching.items()):
            if seen >= RELAY_SCAN:
                break
            if other_id == peer.peer_id or other_id in skip or (other_id, num) in self._stuck:
                continue
            other = self.peers[other_id]
            source = other.inflight[num][0]
            if other.uploads >= self._relay_slots(source) or other.errors >= cfg.max_holder_errors:
                continue
            if source == SUPERNODE:   # begun (the supernode saw it ask), and not stalled
                if (other_id, num) not in self._started \
                        or not self._live_supernode_fetch(other_id, num, since, now):
                    continue
            elif now - since > cfg.piece_stall_s or self._fed_by(other, num, peer.peer_id):
                continue
            elif num in other.relayed and not cfg.relay_chains and not self._second_hop(other, num):
                continue   # a relay of a relay: see relay_chains
            key = (-_shared(peer.location, other.location) if cfg.prefer_near else 0,
                   self._final and num in other.relayed, other.uploads, since, other_id)
            if best_key is None or key < best_key:
                best, best_key = other_id, key
        return best

    def _second_hop(self, relay: PeerState, num: int) -> bool:
        """May `relay`, fetching `num` from a relay, pass it on? Only in the fan-out's
        final round, and only a stream straight from a relay the supernode feeds."""
        if not self._final or num not in relay.fanned:
            return False
        source = self.peers.get(relay.inflight[num][0])
        return source is not None and source.inflight.get(num, ("", 0))[0] == SUPERNODE

    def _fed_by(self, relay: PeerState, num: int, requester: str) -> bool:
        """Does `relay` get `num` from `requester`, directly or through relays? (A loop.)"""
        for _ in range(RELAY_DEPTH):
            source = relay.inflight.get(num, ("", 0))[0]
            if source == requester:
                return True
            relay = self.peers.get(source)
            if relay is None or num not in relay.inflight:
                return False
        return True   # deeper than we follow: treated as a loop

    def _unreachable(self, peer: PeerState) -> AbstractSet[str]:
        """The peers of the other address family: `peer` cannot connect to them."""
        if peer.family is None:
            return _NOBODY
        return self._family[10 - peer.family]   # 4 <-> 6

    def _start(self, peer: PeerState, num: int, holder: str, now: float) -> None:
        peer.inflight[num] = (holder, now)
        self._incoming[num] = self._incoming.get(num, 0) + 1
        self._fetching.setdefault(num, {})[peer.peer_id] = now
        if holder != SUPERNODE and num not in self.peers[holder].held:
            peer.relayed.add(num)
            if self._fanout() and (self.peers[holder].inflight[num][0] == SUPERNODE
                                   or num in self.peers[holder].fanned):
                peer.fanned.add(num)   # a stream: at the supernode's pace, not the link's
        if peer.location:
            key = (peer.location[:ZONE_LABELS], num)
            self._coming.setdefault(key, {})[peer.peer_id] = now
            self._coming_key[(peer.peer_id, num)] = key
        if holder == SUPERNODE:
            self.supernode_uploads += 1
            peer.from_supernode += 1
            self._from_supernode.setdefault(num, {})[peer.peer_id] = now
        else:
            self.peers[holder].uploads += 1
            self._file_by_load(self.peers[holder])
            there = self.peers[holder].location
            if peer.location and there:
                self._within_zone[(peer.peer_id, num)] = \
                    peer.location[:ZONE_LABELS] == there[:ZONE_LABELS]

    def _release(self, peer: PeerState, num: int) -> None:
        holder, _ = peer.inflight.pop(num, (None, 0))
        if holder is None:
            return
        self._incoming[num] = max(0, self._incoming.get(num, 1) - 1)
        self._within_zone.pop((peer.peer_id, num), None)
        peer.relayed.discard(num)
        peer.fanned.discard(num)
        self._stuck.discard((peer.peer_id, num))
        fetchers = self._fetching.get(num)
        if fetchers is not None:
            fetchers.pop(peer.peer_id, None)
            if not fetchers:
                del self._fetching[num]
        coming_key = self._coming_key.pop((peer.peer_id, num), None)
        if coming_key is not None:
            coming = self._coming[coming_key]
            coming.pop(peer.peer_id, None)
            if not coming:
                del self._coming[coming_key]
        if holder == SUPERNODE:
            key = (peer.peer_id, num)
            self._started.pop(key, None)
            self._slow.discard(key)
            self._sent_at.pop(key, None)
            if key in self._sent:
                self._sent.discard(key)   # its slot was freed already
            else:
                self.supernode_uploads = max(0, self.supernode_uploads - 1)
                peer.from_supernode = max(0, peer.from_supernode - 1)
            fetching = self._from_supernode.get(num)
            if fetching is not None:
                fetching.pop(peer.peer_id, None)
                if not fetching:
                    del self._from_supernode[num]
        elif holder in self.peers:
            self.peers[holder].uploads = max(0, self.peers[holder].uploads - 1)
            self._file_by_load(self.peers[holder])

    def _unlocate(self, peer: PeerState) -> None:
        for depth in range(1, len(peer.location) + 1):
            group = self._located.get(peer.location[:depth])
            if group is not None:
                group.discard(peer.peer_id)
                if not group:
                    del self._located[peer.location[:depth]]

    def _heard_from(self, peer: PeerState, now: float) -> None:
        """A sign of life from `peer` itself: it is no longer suspect."""
        peer.last_seen = now
        if peer.peer_id in self._suspect:
            self._suspect.discard(peer.peer_id)
            self._file_by_load(peer)

    def _free_slot(self, peer_id: str, num: int) -> None:
        """The supernode slot of (peer_id, num) is free; the assignment stays."""
        self._sent.add((peer_id, num))
        self.supernode_uploads = max(0, self.supernode_uploads - 1)
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.from_supernode = max(0, peer.from_supernode - 1)

    def _file_by_load(self, peer: PeerState) -> None:
        """Put `peer` in the _free bucket of its load (in none when full, holding
        nothing, or suspect)."""
        self._unfile(peer.peer_id)
        if peer.held and peer.uploads < self.config.max_uploads_per_peer \
                and peer.peer_id not in self._suspect:
            self._free.setdefault(peer.uploads, set()).add(peer.peer_id)
            self._load_of[peer.peer_id] = peer.uploads

    def _unfile(self, peer_id: str) -> None:
        load = self._load_of.pop(peer_id, None)
        if load is not None:
            bucket = self._free[load]
            bucket.discard(peer_id)
            if not bucket:
                del self._free[load]

    # queries for waking long-polling peers ------------------------------------------
    def lacks_any(self, peer_id: str, pieces: Optional[frozenset]) -> bool:
        """Does `peer_id` neither hold nor fetch one of `pieces` (None: any piece)?"""
        peer = self.peers.get(peer_id)
        if peer is None or pieces is None:
            return True
        held, inflight = peer.held, peer.inflight
        return any(n not in held and n not in inflight for n in pieces)

    def pieces_of(self, holder: str) -> Set[int]:
        """The pieces `holder` (a peer, or SUPERNODE) could serve."""
        if holder == SUPERNODE:
            return set(self.supernode_pieces)
        peer = self.peers.get(holder)
        return set(peer.held) if peer is not None else set()


def _shared(here: Location, there: Location) -> int:
    """How many leading labels two locations share."""
    n = 0
    for a, b in zip(here, there):
        if a != b:
            break
        n += 1
    return n


def _mix(num: int, salt: int) -> int:
    """A cheap per-peer shuffle of piece numbers (Knuth's multiplicative hash)."""
    return ((num + 1) * 2654435761 ^ salt) & 0xFFFFFFFF
