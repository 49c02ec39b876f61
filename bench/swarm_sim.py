"""A flow-level simulation of one task's swarm, every decision taken by the real
scheduler (dfly/supernode/scheduler.py, pure: each call takes `now`), to tell
what the scheduling policy costs apart from what the testbed's shared CPU does.

    python3 bench/swarm_sim.py                                  # 8 and 16 hosts, 1/2/4 MiB, whole and cut
    python3 bench/swarm_sim.py --hosts 16 --piece 1M --cut whole --timeline
    python3 bench/swarm_sim.py --hosts 16 --piece 1M --cut cut --fanout 0   # the policy before the fan-out
    python3 bench/swarm_sim.py --hosts 16 --piece 1M --cut cut --census 0.1,0.5   # who sends to whom then

Modelled:
- hosts with symmetric links (`--rate` Mbit/s each way), the supernode's host on
  a link of the same rate (its uplink is the swarm's usual bottleneck), and an
  origin beside it that the supernode cuts pieces from at `--origin-rate` (the
  testbed's nginx shares the supernode's host: the cut never crosses its link);
- bandwidth shared by max-min fairness over the flows (progressive filling: a
  flow is limited by its sender's uplink and its receiver's downlink),
  recomputed whenever a flow starts, ends or a relayed flow catches up;
- the peer as dfly/peer/downloader.py has it: a coordinator asking for `want` =
  its free slots of `parallel` (an order that says `relay`, a stream of the
  scheduler's fan-out or any relay under the supernode's --free-relay-slots,
  holds no slot: at most `parallel` + RELAY_FETCHES in flight then; with
  --refill, as tried and reverted, a piece whose last block is arriving frees
  its slot too, the next piece asked for meanwhile); long-polling
  (POLL_WAIT_S) when nothing is assignable; a settled piece's report rides on
  the next call, or goes by the reporter's own call while the coordinator is
  held in a long-poll;
- the supernode as service.py and task.py have it: reports applied before
  `assign`, a call with nothing to assign waits as a Waiter, woken by batons
  (`offered`: a piece cut or reported, an upload slot freed, a relay begun) in
  the order waiters last waited, or by its own peer's reports (`wake_peers`);
  `supernode_started` when a request for a piece reaches the supernode,
  `supernode_sent` when its last byte leaves;
- whole pieces (a holder serves a piece only once it has it all) and
  cut-through (the scheduler's `cut_through`): a relay serves the blocks it
  has, so a relayed flow stays one block (256 KiB, pieces.py) behind its
  relay's own flow of that piece, going at most at that flow's rate once it
  has caught up;
- a fixed delay per message (`--rtt`: half of it each way; 1 ms by default)
  for schedule calls, reports and a piece request reaching its holder.

Not modelled: CPU (hashing, Python, 16 processes on 2 vCPUs: the testbed's
limit), start-up (every host registers at 0 unless `--start-spread`), TCP
(slow start: at a 1 ms round trip a flow reaches its share within ~10 ms;
loss, uneven sharing, socket buffers that let the supernode's slot free
before the bytes arrive), the wire's overhead
(`--goodput` scales the links: 1.0 by default, ~0.95 for TCP/IP over
Ethernet), failures, expiry and the janitor, the whole-file digest. Time 0 is
the first registration. Deterministic: the scheduler is, and `--seed` only
draws the start spread.
"""
import argparse
import collections
import heapq
import os
import random
import statistics
import sys
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # harness, also when imported
from harness import MiB, human, parse_size  # noqa: E402

from dfly.peer.downloader import POLL_WAIT_S, RELAY_FETCHES  # noqa: E402
from dfly.protocol.messages import SUPERNODE  # noqa: E402
from dfly.protocol.pieces import block_size_for, piece_count, piece_size_for  # noqa: E402
from dfly.supernode import scheduler as scheduler_module  # noqa: E402
from dfly.supernode.scheduler import SchedulerConfig, TaskScheduler  # noqa: E402
from dfly.supernode.service import MAX_WAIT_S  # noqa: E402
from dfly.supernode.task import BATON_MISSES  # noqa: E402

MARKS = (0.5, 1.0, 1.5, 2.0)   # the ramp: MiB a host holds this long after registering
EPS_BYTES = 1.0                # a flow this close to its end or its relay counts as there
MAX_STEPS = 2_000_000          # bounds a run however the model goes wrong
MAX_SIM_S = 600.0


@dataclass(frozen=True)
class SimConfig:
    hosts: int = 8
    rate_mbit: float = 100.0
    size: int = 64 * MiB
    piece_size: Optional[int] = None          # None: pieces.py decides
    cut_through: bool = False
    parallel: int = 4                         # the get's --parallel
    free_relay_slots: bool = False            # the supernode's --free-relay-slots
    relay_chains: bool = False                # a relay may be fed by a relay (the scheduler's)
    refill: bool = False                      # a peer frees a slot at a piece's last block (tried)
    rtt_s: float = 0.001                      # per call: half each way
    origin_rate_mbit: float = 1000.0          # the supernode's cut from the origin
    origin_delay_s: float = 0.0               # first registration to the origin's first byte
    start_spread_s: float = 0.0               # hosts register at random within this
    goodput: float = 1.0                      # share of the link rate that is payload
    max_uploads_per_peer: int = 4
    max_uploads_supernode: int = 4
    fanout: int = SchedulerConfig.fanout     # the scheduler's fan-out (0: off)
    tie_window: int = scheduler_module.TIE_WINDOW
    seed: int = 1
    census_s: Tuple[float, ...] = ()          # --census: who sends to whom at these times
    scheduler_extra: Tuple[Tuple[str, object], ...] = ()   # other SchedulerConfig fields

    @property
    def pieces(self) -> int:
        return piece_count(self.size, self.real_piece_size)

    @property
    def real_piece_size(self) -> int:
        return self.piece_size or piece_size_for(self.size)

    @property
    def bound_s(self) -> float:
        """The file through one link: no host can be faster."""
        return self.size * 8 / (self.rate_mbit * 1e6)


# flows ------------------------------------------------------------------------------
@dataclass(eq=False)
class Flow:
    src: str
    dst: str
    piece: int
    size: int
    began: float
    delivered: float = 0.0
    rate: float = 0.0
    kind: str = "whole"                # supernode, whole or relayed (the holder's copy came later)
    refill_at: Optional[int] = None    # bytes verified when the last block is arriving
    ending: bool = False               # past refill_at: its slot is free (downloader's _ending)
    follows: Optional["Flow"] = None   # the relay's own flow of the piece, while it has it not whole
    waiting: bool = False              # a relayed flow with nothing to send yet

    @property
    def left(self) -> float:
        return self.size - self.delivered


class Network:
    """Links and flows; rates by max-min fairness (progressive filling), where a
    relayed flow that has caught up with its relay's flow goes no faster than it."""

    def __init__(self, capacity: Dict[Tuple[str, str], float], block: int):
        self.capacity = capacity
        self.block = block
        self.flows: List[Flow] = []
        self.incoming: Dict[Tuple[str, int], Flow] = {}   # (host, piece) -> its flow in
        self.whole: Dict[str, set] = collections.defaultdict(set)   # host -> pieces it has whole

    def start(self, flow: Flow) -> None:
        self.flows.append(flow)
        self.incoming[(flow.dst, flow.piece)] = flow

    def finish(self, flow: Flow) -> None:
        self.flows.remove(flow)
        del self.incoming[(flow.dst, flow.piece)]
        self.whole[flow.dst].add(flow.piece)

    def solve(self) -> None:
        for f in self.flows:
            self._link_relay(f)
        followers: Dict[int, List[Flow]] = collections.defaultdict(list)
        for f in self.flows:
            if f.follows is not None and not f.waiting:
                followers[id(f.follows)].append(f)
        left = dict(self.capacity)
        users: Dict[Tuple[str, str], List[Flow]] = collections.defaultdict(list)
        frozen = set()

        def freeze(f: Flow, rate: float) -> None:
            todo = [f]
            while todo:
                g = todo.pop()
                if id(g) in frozen:
                    continue
                frozen.add(id(g))
                g.rate = rate
                for link in ((g.src, "up"), (g.dst, "down")):
                    users[link].remove(g)
                    left[link] -= rate
                todo.extend(followers.get(id(g), ()))

        for f in self.flows:
            users[(f.src, "up")].append(f)
            users[(f.dst, "down")].append(f)
        for f in self.flows:
            if f.waiting:
                freeze(f, 0.0)
        level = 0.0   # the rate of every flow not frozen yet
        while len(frozen) < len(self.flows):
            link, share = min(((k, (left[k] - level * len(v)) / len(v)) for k, v in users.items() if v),
                              key=lambda kv: (kv[1], kv[0]))
            level += max(0.0, share)
            for f in list(users[link]):
                freeze(f, level)

    def _link_relay(self, f: Flow) -> None:
        """Is `f` held back by its relay's own flow of the piece?"""
        f.follows, f.waiting = None, False
        if f.src == SUPERNODE or f.piece in self.whole[f.src]:
            return
        up = self.incoming.get((f.src, f.piece))
        if up is None:   # the relay's own fetch has not begun
            f.waiting = True
            return
        verified = up.delivered - self.block   # a block behind: the relay serves verified blocks
        if f.delivered >= verified - EPS_BYTES:
            f.follows = up
            f.waiting = up.delivered < self.block - EPS_BYTES

    def next_change_s(self) -> float:
        """Time until a flow ends, has only its last block to come, catches up with its
        relay, or its relay has a first block."""
        best = float("inf")
        for f in self.flows:
            if f.rate > 0:
                best = min(best, f.left / f.rate)
                if f.refill_at is not None and not f.ending:
                    best = min(best, max(0.0, f.refill_at - f.delivered) / f.rate)
            up = self.incoming.get((f.src, f.piece)) if f.src != SUPERNODE else None
            if up is None or f.piece in self.whole[f.src]:
                continue
            if f.waiting and up.rate > 0:
                best = min(best, (self.block - up.delivered) / up.rate)
            elif f.follows is None and f.rate > up.rate:
                best = min(best, (up.delivered - self.block - f.delivered) / (f.rate - up.rate))
        return max(0.0, best)

    def advance(self, dt: float) -> None:
        for f in self.flows:
            f.delivered = min(float(f.size), f.delivered + f.rate * dt)

    def ended(self) -> List[Flow]:
        return [f for f in self.flows if f.left <= EPS_BYTES]

    def ending(self) -> List[Flow]:
        """Flows whose last block has just begun to arrive."""
        return [f for f in self.flows if f.refill_at is not None and not f.ending
                and f.delivered >= f.refill_at - EPS_BYTES and f.left > EPS_BYTES]


def refill_at(size: int, block: int) -> Optional[int]:
    """Bytes verified (whole blocks) when the last block begins to arrive: when the
    downloader frees the slot of a piece (_block_verified); None for one block."""
    at = -(-(size - block) // block) * block
    return at if 0 < at < size else None


# the peers and the supernode ------------------------------------------------------------
@dataclass
class Order:
    holder: str
    relay: bool   # the order says `relay`: it holds no download slot (the scheduler's frees_slot)


@dataclass
class SimPeer:
    peer_id: str
    registered_at: float = 0.0
    held: set = field(default_factory=set)
    inflight: Dict[int, Order] = field(default_factory=dict)
    ending: set = field(default_factory=set)   # in flight, last block arriving: no slot held
    done: List[int] = field(default_factory=list)   # settled, not reported yet
    in_call: bool = False
    reporting: bool = False
    finished_at: Optional[float] = None
    held_at: List[Tuple[float, int]] = field(default_factory=list)   # (time, bytes held)


class Waiter:
    def __init__(self, peer_id: str, want: int, deadline: float):
        self.peer_id, self.want, self.deadline = peer_id, want, deadline
        self.woken = False
        self.answered = False
        self.queued = False
        self.baton: Optional[Tuple[Optional[frozenset], int]] = None


class Swarm:
    """One task's swarm: events in time order, flows between them."""

    def __init__(self, cfg: SimConfig):
        self.cfg = cfg
        self.now = 0.0
        sched_cfg = SchedulerConfig(max_uploads_per_peer=cfg.max_uploads_per_peer,
                                    max_uploads_supernode=cfg.max_uploads_supernode,
                                    cut_through=cfg.cut_through, prefer_near=False,
                                    free_relay_slots=cfg.free_relay_slots,
                                    relay_chains=cfg.relay_chains, fanout=cfg.fanout,
                                    **dict(cfg.scheduler_extra))
        self.sched = TaskScheduler(sched_cfg)
        self.piece_size = cfg.real_piece_size
        self.count = cfg.pieces
        link = cfg.rate_mbit * 1e6 / 8 * cfg.goodput
        self.peers = {"h%02d" % i: SimPeer("h%02d" % i) for i in range(cfg.hosts)}
        capacity = {}
        for host in list(self.peers) + [SUPERNODE]:
            capacity[(host, "up")] = capacity[(host, "down")] = link
        self.net = Network(capacity, block_size_for(self.piece_size))
        self.events: List[tuple] = []
        self.seq = 0
        self.waiters: Dict[Waiter, None] = {}   # in the order they last began waiting
        self.runnable: collections.deque = collections.deque()
        self.all_cut = False
        self.cutting = False
        self.sn_bytes = 0
        self.sn_last_byte = 0.0
        self.fetches = {"supernode": 0, "whole": 0, "relayed": 0}
        self.fetch_s: Dict[str, List[float]] = {kind: [] for kind in self.fetches}
        self.usage: Dict[int, List[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
        self.census_due = sorted(cfg.census_s)
        self.census: List[str] = []

    # the event queue ----------------------------------------------------------------
    def at(self, when: float, fn, *args) -> None:
        self.seq += 1
        heapq.heappush(self.events, (when, self.seq, fn, args))

    def run(self) -> "SimResult":
        rng = random.Random(self.cfg.seed)
        for peer in self.peers.values():
            began = rng.uniform(0, self.cfg.start_spread_s) if self.cfg.start_spread_s else 0.0
            self.at(began + self.half, self.registered, peer)
        steps = 0
        while any(p.finished_at is None for p in self.peers.values()):
            steps += 1
            if steps > MAX_STEPS or self.now > MAX_SIM_S:
                raise RuntimeError("the simulation did not end (%d steps, %.1f s)" % (steps, self.now))
            self.step()
        return self.result()

    def step(self) -> None:
        t_event = self.events[0][0] if self.events else float("inf")
        t_flow = self.now + self.net.next_change_s()
        t = min(t_event, t_flow)
        if t == float("inf"):
            raise RuntimeError("the swarm is stuck at %.3f s: no flow, no event" % self.now)
        self._account(t)
        self.net.advance(t - self.now)
        self.now = t
        changed = t_flow <= t_event
        for flow in self.net.ended():
            self.flow_ended(flow)
            changed = True
        for flow in self.net.ending():
            flow.ending = True
            peer = self.peers[flow.dst]
            peer.ending.add(flow.piece)
            self.coordinate(peer)
            self.drain()
        while self.events and self.events[0][0] <= self.now:
            _, _, fn, args = heapq.heappop(self.events)
            changed = fn(*args) is not False or changed
            self.drain()
        if changed:
            self.net.solve()
        while self.census_due and self.now >= self.census_due[0]:
            self.census.append(self._census(self.census_due.pop(0)))

    def _account(self, t: float) -> None:
        """Bytes the supernode sent and the hosts received, per 0.25 s, for --timeline."""
        sn_rate = sum(f.rate for f in self.net.flows if f.src == SUPERNODE)
        rate = sum(f.rate for f in self.net.flows)
        start = self.now
        while start < t:
            bucket = int(start / 0.25)
            end = min(t, (bucket + 1) * 0.25)
            used = self.usage[bucket]
            used[0] += sn_rate * (end - start)
            used[1] += rate * (end - start)
            used[2] += len(self.net.flows) * (end - start)
            start = end if end > start else t

    def _census(self, at: float) -> str:
        """One line on the flows now: how the supernode's streams are spread over the
        hosts, how many flows each host sends and takes, what they hold."""
        flows = self.net.flows
        link = self.cfg.rate_mbit * 1e6 / 8 * self.cfg.goodput
        kinds = collections.Counter(f.kind for f in flows)
        fed = collections.Counter(f.dst for f in flows if f.src == SUPERNODE)
        out = collections.Counter(f.src for f in flows if f.src != SUPERNODE)
        into = collections.Counter(f.dst for f in flows)
        held = sorted(len(p.held) for p in self.peers.values())

        def spread(counter):   # per host, most first; hosts with none left out
            return "/".join(str(n) for n in sorted(counter.values(), reverse=True)) or "-"
        return ("%5.2f s  flows %d (%s)  supernode %.2f R in %d streams to hosts %s  hosts "
                "down %.1f R  sending %s  taking %s  pieces held %d..%d"
                % (at, len(flows), " ".join("%s %d" % kv for kv in sorted(kinds.items())),
                   sum(f.rate for f in flows if f.src == SUPERNODE) / link, sum(fed.values()),
                   spread(fed), sum(f.rate for f in flows) / link, spread(out), spread(into),
                   held[0], held[-1]))

    @property
    def half(self) -> float:
        return self.cfg.rtt_s / 2

    # the supernode's source ------------------------------------------------------------
    def cut(self, num: int) -> bool:
        self.sched.piece_available(num, self.count)
        self.offered((num,))
        if num == self.count - 1:
            self.all_cut = True   # the task is done: every waiter wakes (task.changed)
            for waiter in self.waiters:
                self.wake(waiter, None)
        return False

    def start_cutting(self) -> None:
        self.cutting = True
        per_piece = self.piece_size * 8 / (self.cfg.origin_rate_mbit * 1e6)
        for num in range(self.count):
            self.at(self.now + self.cfg.origin_delay_s + (num + 1) * per_piece, self.cut, num)

    # the peer's coordinator and reporter -------------------------------------------------
    def registered(self, peer: SimPeer) -> bool:
        peer.registered_at = self.now - self.half
        self.sched.peer_joined(peer.peer_id, ("10.77.0.%d" % (2 + int(peer.peer_id[1:])), 8001), self.now)
        if not self.cutting:
            self.start_cutting()
        self.at(self.now + self.half, self.coordinate, peer)
        return False

    def coordinate(self, peer: SimPeer) -> bool:
        """The coordinator's round: ask for the free slots, with the reports."""
        if peer.in_call or peer.finished_at is not None:
            return False
        if len(peer.held) >= self.count and not peer.inflight:
            peer.finished_at = max(t for t, _ in peer.held_at)
            self.report(peer)   # the last reports, by the reporter
            return False
        unslotted = sum(1 for n, o in peer.inflight.items() if o.relay or n in peer.ending)
        parallel = self.cfg.parallel
        want = min(parallel - (len(peer.inflight) - unslotted), parallel + RELAY_FETCHES - len(peer.inflight))
        want = max(0, min(want, self.count - len(peer.held) - len(peer.inflight)))
        if not want and not peer.done:
            return False   # until a worker settles
        done, peer.done = peer.done, []
        peer.in_call = True
        wait_s = POLL_WAIT_S if want else 0.0
        self.at(self.now + self.half, self.schedule_call, peer, want, done, wait_s)
        return False

    def report(self, peer: SimPeer) -> None:
        """The reporter: sends what settled while the coordinator is in a call (or at the end)."""
        if peer.reporting or not peer.done:
            return
        done, peer.done = peer.done, []
        peer.reporting = True
        self.at(self.now + self.half, self.report_call, peer, done)

    def report_call(self, peer: SimPeer, done: List[int]) -> bool:
        self.apply_reports(peer.peer_id, done)
        self.at(self.now + self.half, self.report_answered, peer)
        return False

    def report_answered(self, peer: SimPeer) -> bool:
        peer.reporting = False
        if peer.in_call or peer.finished_at is not None:
            self.report(peer)
        return False

    def answered(self, peer: SimPeer, orders: List[Tuple[int, Order]]) -> bool:
        peer.in_call = False
        for num, order in orders:
            if num in peer.held:
                peer.done.append(num)
            elif num not in peer.inflight:
                peer.inflight[num] = order
                self.at(self.now + self.half, self.fetch_begun, peer, num, order)
        self.coordinate(peer)
        return False

    # the supernode's schedule call -------------------------------------------------------
    def schedule_call(self, peer: SimPeer, want: int, done: List[int], wait_s: float) -> bool:
        self.apply_reports(peer.peer_id, done)
        waiter = Waiter(peer.peer_id, want, self.now + min(wait_s, MAX_WAIT_S))
        self.attempt(waiter)
        return False

    def attempt(self, waiter: Waiter) -> None:
        """One pass of service.schedule's loop for this call."""
        if waiter.answered:
            return
        got = self.sched.assign(waiter.peer_id, waiter.want, self.now)
        if got and self.cfg.cut_through:
            self.offered([a.piece for a in got])   # relayed from it now
        if waiter.queued:
            self.tried(waiter, bool(got))
        peer = self.peers[waiter.peer_id]
        has_all = self.all_cut and len(self.sched.peers[waiter.peer_id].held) >= self.count
        if got or self.now >= waiter.deadline or has_all:
            waiter.answered = True
            self.stop_waiting(waiter)
            orders = [(a.piece, Order(a.holder, self.sched.frees_slot(waiter.peer_id, a.piece)))
                      for a in got]
            self.at(self.now + self.half, self.answered, peer, orders)
            return
        if not waiter.queued:
            waiter.queued = True
            self.at(waiter.deadline, self.attempt_again, waiter)
        self.waiters.pop(waiter, None)
        self.waiters[waiter] = None   # to the back
        waiter.woken = False

    def attempt_again(self, waiter: Waiter) -> bool:
        if not waiter.answered and not waiter.woken:
            self.attempt(waiter)   # its long-poll's deadline
        return False

    def drain(self) -> None:
        """Run woken waiters in the order woken (each takes the task lock in turn)."""
        while self.runnable:
            self.attempt(self.runnable.popleft())

    def apply_reports(self, peer_id: str, done: List[int]) -> None:
        sched = self.sched
        inflight = dict(sched.peers[peer_id].inflight)
        offered, freed = set(), set()
        for num in done:
            sched.piece_done(peer_id, num, self.now)
            offered.add(num)
            if num in inflight:
                freed.add(inflight[num][0])
        for holder in freed:
            offered |= sched.pieces_of(holder)
        if offered:
            self.offered(offered)
        if done:
            for waiter in self.waiters:   # its own long-poll: it may hold everything now
                if waiter.peer_id == peer_id:
                    self.wake(waiter, None)

    # batons (task.py) -------------------------------------------------------------------
    def offered(self, pieces) -> None:
        self.pass_baton((None if pieces is None else frozenset(pieces), BATON_MISSES))

    def pass_baton(self, baton) -> None:
        for waiter in self.waiters:
            if waiter.woken or waiter.want <= 0:
                continue
            if self.sched.lacks_any(waiter.peer_id, baton[0]):
                self.wake(waiter, baton)
                return

    def wake(self, waiter: Waiter, baton) -> None:
        if waiter.woken:
            return
        waiter.woken, waiter.baton = True, baton
        self.runnable.append(waiter)

    def tried(self, waiter: Waiter, served: bool) -> None:
        baton, waiter.baton = waiter.baton, None
        if baton is None:
            return
        if served:
            self.pass_baton((baton[0], BATON_MISSES))
        elif baton[1] > 0:
            self.pass_baton((baton[0], baton[1] - 1))

    def stop_waiting(self, waiter: Waiter) -> None:
        self.waiters.pop(waiter, None)
        baton, waiter.baton = waiter.baton, None
        if baton is not None:
            self.pass_baton(baton)

    # piece fetches ----------------------------------------------------------------------
    def fetch_begun(self, peer: SimPeer, num: int, order: Order) -> bool:
        """The worker's request reached the holder: its bytes start to flow."""
        if order.holder == SUPERNODE:
            self.sched.supernode_started(peer.peer_id, num, self.now)
            if self.cfg.cut_through:
                self.offered((num,))
            kind = "supernode"
        else:
            relayed = order.holder in self.peers and num not in self.net.whole[order.holder]
            kind = "relayed" if relayed else "whole"
        self.fetches[kind] += 1
        size = min(self.piece_size, self.cfg.size - num * self.piece_size)
        self.net.start(Flow(order.holder, peer.peer_id, num, size, self.now, kind=kind,
                            refill_at=refill_at(size, self.net.block) if self.cfg.refill else None))
        return True

    def flow_ended(self, flow: Flow) -> None:
        self.net.finish(flow)
        self.fetch_s[flow.kind].append(self.now - flow.began)
        peer = self.peers[flow.dst]
        if flow.src == SUPERNODE:
            self.sn_bytes += flow.size
            self.sn_last_byte = self.now
            if self.sched.supernode_sent(peer.peer_id, flow.piece, self.now):
                self.offered(self.sched.pieces_of(SUPERNODE))
        peer.inflight.pop(flow.piece)
        peer.ending.discard(flow.piece)
        peer.held.add(flow.piece)
        peer.done.append(flow.piece)
        peer.held_at.append((self.now, len(peer.held) * self.piece_size))
        if peer.in_call:
            self.report(peer)
        else:
            self.coordinate(peer)
        self.drain()

    # the figures --------------------------------------------------------------------------
    def result(self) -> "SimResult":
        cfg = self.cfg
        finish = sorted(p.finished_at for p in self.peers.values())
        ramp = {m: statistics.median(_held(p, p.registered_at + m) / MiB for p in self.peers.values())
                for m in MARKS}
        lacking = statistics.median(self.count - _held(p, self.sn_last_byte) // self.piece_size
                                    for p in self.peers.values())
        return SimResult(cfg, finish[-1], statistics.median(finish), self.sn_bytes / cfg.size,
                         ramp, self.sn_last_byte, lacking, dict(self.fetches),
                         {k: statistics.median(v) for k, v in self.fetch_s.items() if v},
                         {p.peer_id: p.finished_at for p in self.peers.values()},
                         {p.peer_id: sorted(p.held) for p in self.peers.values()},
                         self.timeline(), self.census)

    def timeline(self) -> List[Tuple[float, float, float, float]]:
        """(start, supernode uplink used, hosts' downlinks used, flows) per 0.25 s."""
        link = self.cfg.rate_mbit * 1e6 / 8 * 0.25
        return [(b * 0.25, u[0] / link, u[1] / (link * self.cfg.hosts), u[2] / 0.25)
                for b, u in sorted(self.usage.items())]


def _held(peer: SimPeer, t: float) -> int:
    got = 0
    for when, held in peer.held_at:
        if when > t:
            break
        got = held
    return got


@dataclass
class SimResult:
    config: SimConfig
    last_s: float
    median_s: float
    supernode_copies: float
    ramp_mib: Dict[float, float]
    supernode_done_s: float
    lacking_then: float   # pieces a host lacked when the supernode sent its last (median)
    fetches: Dict[str, int]
    fetch_s: Dict[str, float]   # median time a fetch took, by where it came from
    finished: Dict[str, float]
    held: Dict[str, List[int]]
    timeline: List[Tuple[float, float, float, float]]
    census: List[str]

    @property
    def x_bound(self) -> float:
        return self.last_s / self.config.bound_s

    @property
    def tail_s(self) -> float:
        return self.last_s - self.supernode_done_s


def simulate(cfg: SimConfig) -> SimResult:
    """Run one swarm (the scheduler's TIE_WINDOW set for the run, then put back)."""
    before = scheduler_module.TIE_WINDOW
    scheduler_module.TIE_WINDOW = cfg.tie_window
    try:
        return Swarm(cfg).run()
    finally:
        scheduler_module.TIE_WINDOW = before


# the command ---------------------------------------------------------------------------
def _piece_sizes(text: str) -> List[Optional[int]]:
    return [None if piece == "auto" else parse_size(piece) for piece in text.split(",")]


def row(r: SimResult) -> str:
    c = r.config
    ramp = " / ".join("%.1f" % r.ramp_mib[m] for m in MARKS)
    f = r.fetches
    took = " / ".join("%.2f" % r.fetch_s[k] if k in r.fetch_s else "-"
                      for k in ("supernode", "whole", "relayed"))
    return ("| %d | %d MiB | %s | %.2f s | %.2f s | %.3fx | %.2f | %s | %.2f s | %g | %.2f s "
            "| %d / %d / %d | %s |"
            % (c.hosts, r.config.real_piece_size // MiB, "cut" if c.cut_through else "whole",
               r.last_s, r.median_s, r.x_bound, r.supernode_copies, ramp, r.supernode_done_s,
               r.lacking_then, r.tail_s, f["supernode"], f["whole"], f["relayed"], took))


HEADER = ("| hosts | piece | relays | last host | median host | x bound | supernode copies "
          "| ramp MiB at 0.5 / 1 / 1.5 / 2 s | last piece out of supernode | pieces lacking then "
          "| tail | fetches: supernode / whole / relayed | median fetch s: supernode / whole / relayed |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", default="8,16", help="host counts, comma-separated")
    ap.add_argument("--rate", type=float, default=100.0, help="each link, Mbit/s")
    ap.add_argument("--size", type=parse_size, default="64M")
    ap.add_argument("--piece", type=_piece_sizes, default="1M,2M,4M",
                    help="piece sizes ('auto': pieces.py's)")
    ap.add_argument("--cut", choices=("both", "whole", "cut"), default="both")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--rtt", type=float, default=0.001, help="seconds per call, half each way")
    ap.add_argument("--origin-rate", type=float, default=1000.0, help="the supernode's cut, Mbit/s")
    ap.add_argument("--origin-delay", type=float, default=0.0)
    ap.add_argument("--start-spread", type=float, default=0.0)
    ap.add_argument("--goodput", type=float, default=1.0)
    ap.add_argument("--max-uploads", type=int, default=4, help="the supernode's upload slots")
    ap.add_argument("--max-uploads-per-peer", type=int, default=4)
    ap.add_argument("--fanout", type=int, default=SchedulerConfig.fanout, help="the scheduler's "
                    "fan-out: the supernode feeds up to this many peers a piece each at once, each "
                    "relays it to the others (0: off, the policy before it)")
    ap.add_argument("--tie-window", type=int, default=scheduler_module.TIE_WINDOW)
    ap.add_argument("--refill", action="store_true", help="the peer of 84aef37 (reverted): a "
                    "piece holds its slot only until its last block begins to arrive, not until whole")
    ap.add_argument("--free-relay-slots", action="store_true", help="the supernode's flag: a "
                    "relayed fetch holds none of the requester's --parallel slots")
    ap.add_argument("--relay-chains", action="store_true", help="the scheduler's relay_chains: "
                    "a relay may itself be fed by a relay (main before the testbed measured it)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeline", action="store_true", help="per 0.25 s: links used, flows")
    ap.add_argument("--census", default="", help="times (s, comma-separated): the flows then, "
                    "per host (how the fan-out forms, or does not)")
    args = ap.parse_args(argv)
    base = SimConfig(rate_mbit=args.rate, size=args.size, parallel=args.parallel,
                     rtt_s=args.rtt, origin_rate_mbit=args.origin_rate,
                     origin_delay_s=args.origin_delay, start_spread_s=args.start_spread,
                     goodput=args.goodput, max_uploads_supernode=args.max_uploads,
                     max_uploads_per_peer=args.max_uploads_per_peer, tie_window=args.tie_window,
                     free_relay_slots=args.free_relay_slots, refill=args.refill,
                     relay_chains=args.relay_chains, fanout=args.fanout,
                     seed=args.seed,
                     census_s=tuple(float(t) for t in args.census.split(",") if t))
    cuts = {"both": (False, True), "whole": (False,), "cut": (True,)}[args.cut]
    print("bound %.2f s (%s at %g Mbit/s)" % (base.bound_s, human(args.size), args.rate))
    print(HEADER)
    for hosts in [int(h) for h in args.hosts.split(",")]:
        for size in args.piece:
            for cut in cuts:
                r = simulate(replace(base, hosts=hosts, piece_size=size, cut_through=cut))
                print(row(r), flush=True)
                for line in r.census:
                    print("    " + line)
                if args.timeline:
                    for start, sn, down, flows in r.timeline:
                        print("    %5.2f s  supernode up %3.0f %%  hosts down %3.0f %%  flows %4.1f"
                              % (start, 100 * sn, 100 * down, flows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
