"""A simulated network for the pure SWIM core (dfly/gossip/swim.py): hundreds of
members in accelerated time, deterministic from a seed, with packet loss, delay,
partitions, crashed members, frozen ones and stalled ones:

- frozen: nothing of it runs (a stopped process, a long GC pause, a paused VM).
  Packets sent to it wait in its socket buffer (a bounded one: the kernel drops
  what does not fit); when it thaws its overdue timers run first, then the
  packets that waited (dfly's loop reads one packet, then runs the timers).
- stalled: its packet handling stops while its timers keep running (a blocked
  receive loop; the Lifeguard paper's "slow message processing"): its probes
  go out and time out, the acks wait in its buffer with everything else, its
  suspicions run out before it reads the refutations.

Used by tests/unit/test_gossip_*.py (short runs) and bench/gossip_sim.py (the
long ones the issue's targets name)."""
import dataclasses
import heapq
import json
import random
from typing import Callable, Dict, List, Optional, Set, Tuple

from dfly.gossip.swim import ALIVE, DEAD, LEFT, Send, Swim, SwimConfig

WIRE_OVERHEAD_BYTES = 28 + 8 + 8 + 32 + 3   # IP/UDP headers, timestamp, sequence, tag, magic
RCVBUF_BYTES = 212992      # Linux's default socket receive buffer (net.core.rmem_default)
DATAGRAM_COST_BYTES = 768  # about what the kernel charges a queued datagram beyond its payload


class SimNet:
    def __init__(self, config: SwimConfig, seed: int = 1, loss: float = 0.0,
                 delay_s: Tuple[float, float] = (0.0005, 0.003), measure_bytes: bool = False):
        self.config = config
        self.rng = random.Random(seed)
        self.loss = loss
        self.delay_s = delay_s
        self.measure_bytes = measure_bytes
        self.now = 0.0
        self.nodes: Dict[str, Swim] = {}
        self.addr_of: Dict[str, Tuple[str, int]] = {}
        self.name_at: Dict[Tuple[str, int], str] = {}
        self.crashed: Set[str] = set()
        self.frozen_until: Dict[str, float] = {}
        self.stalled_until: Dict[str, float] = {}
        self.buffered: Dict[str, int] = {}   # member -> bytes waiting in its socket buffer
        self.overflowed = 0                  # packets dropped on a full socket buffer
        self.slow_s: Dict[str, float] = {}   # member -> how late it handles each packet
        self.blocked: Optional[Callable[[str, str], bool]] = None   # a partition: (from, to) -> dropped
        self.bytes_sent: Dict[str, int] = {}
        self.false_deaths: List[Tuple[float, str, str]] = []   # (when, observer, victim)
        self.dead_seen: Dict[str, Dict[str, float]] = {}       # victim -> observer -> when
        self.alive_seen: Dict[str, Dict[str, float]] = {}      # member -> observer -> when
        self._queue: List = []
        self._order = 0
        self._scheduled: Dict[str, float] = {}

    # building ------------------------------------------------------------------------
    def add(self, name: str, join: Optional[List[str]] = None) -> Swim:
        addr = ("sim", len(self.addr_of) + 1)
        node = Swim(name, addr, {"v": 1}, self.config, random.Random(self.rng.random()), self.now)
        self.nodes[name], self.addr_of[name], self.name_at[addr] = node, addr, name
        self.bytes_sent[name] = 0
        self._route(name, node.join([self.addr_of[j] for j in join or []], self.now))
        self._schedule(name)
        return node

    def cluster(self, n: int, settle_s: float = 30.0) -> None:
        """n members, each joining the first; run until they settle."""
        self.add("m0")
        for i in range(1, n):
            self.add("m%d" % i, join=["m0"])
        self.run(settle_s)

    # faults ---------------------------------------------------------------------------
    def crash(self, name: str) -> None:
        self.crashed.add(name)

    def freeze(self, name: str, duration_s: float) -> None:
        """Nothing of it runs for duration_s; packets wait in its socket buffer."""
        self.frozen_until[name] = self.now + duration_s

    def stall(self, name: str, duration_s: float) -> None:
        """Its timers run, but it reads no packet for duration_s (they wait in its buffer)."""
        self.stalled_until[name] = self.now + duration_s

    def slow_down(self, name: str, lag_s: float) -> None:
        """Its timers run on time, but every packet is handled lag_s late (a starved CPU)."""
        self.slow_s[name] = lag_s

    # running ----------------------------------------------------------------------------
    def run(self, duration_s: float) -> None:
        end = self.now + duration_s
        while self._queue and self._queue[0][0] <= end:
            when, _, kind, name, payload = heapq.heappop(self._queue)
            self.now = when
            if name in self.crashed or self._held_back(when, kind, name, payload):
                continue
            node = self.nodes[name]
            if kind == "tick":
                if self._scheduled.get(name) != when:
                    continue   # superseded by an earlier wakeup
                del self._scheduled[name]
                sends = node.tick(when)
            else:
                msg, src = payload
                if kind == "held":
                    self.buffered[name] -= _datagram_cost(msg)
                sends = node.receive(msg, src, when)
            self._note_events(name, node)
            self._route(name, sends)
            self._schedule(name)
        self.now = end

    def run_until(self, predicate: Callable[[], bool], limit_s: float, step_s: float = 0.1) -> bool:
        end = self.now + limit_s
        while self.now < end:
            if predicate():
                return True
            self.run(step_s)
        return predicate()

    # views ----------------------------------------------------------------------------
    def live(self) -> List[str]:
        return [n for n in self.nodes if n not in self.crashed and not self.nodes[n].left]

    def state_of(self, observer: str, member: str) -> Optional[str]:
        m = self.nodes[observer].members.get(member)
        return m.state if m is not None else None

    def converged(self) -> bool:
        live = self.live()
        return all(self.state_of(o, m) == ALIVE for o in live for m in live)

    # internals ------------------------------------------------------------------------
    def _held_back(self, when: float, kind: str, name: str, payload) -> bool:
        """Whether this event waits (a frozen member's timers and packets, a stalled
        member's packets) or is lost (a packet its full socket buffer drops)."""
        thaw = self.frozen_until.get(name, 0.0)
        if kind == "tick":
            if thaw <= when:
                return False
            if self._scheduled.get(name) == when:   # its timers run first when it thaws
                self._scheduled[name] = thaw
                self._push(thaw, kind, name, payload)
            return True
        deaf_until = max(thaw, self.stalled_until.get(name, 0.0))
        if deaf_until <= when:
            return False
        if kind == "deliver":   # into its socket buffer, if there is room
            cost = _datagram_cost(payload[0])
            if self.buffered.get(name, 0) + cost > RCVBUF_BYTES:
                self.overflowed += 1
                return True
            self.buffered[name] = self.buffered.get(name, 0) + cost
        self._push(deaf_until + 1e-6, "held", name, payload)
        return True

    def _push(self, when: float, kind: str, name: str, payload) -> None:
        self._order += 1
        heapq.heappush(self._queue, (when, self._order, kind, name, payload))

    def _schedule(self, name: str) -> None:
        if name in self.crashed:
            return
        wake = max(self.nodes[name].next_wakeup(), self.now)
        if wake < self._scheduled.get(name, float("inf")):
            self._scheduled[name] = wake
            self._push(wake, "tick", name, None)

    def _route(self, sender: str, sends: List[Send]) -> None:
        for send in sends:
            dst = self.name_at.get(tuple(send.addr))
            if self.measure_bytes:
                body = json.dumps(send.msg, separators=(",", ":"))
                self.bytes_sent[sender] += len(body) + WIRE_OVERHEAD_BYTES
            if dst is None:
                continue
            if self.blocked is not None and self.blocked(sender, dst):
                continue
            if not send.reliable and self.loss and self.rng.random() < self.loss:
                continue
            lag = self.slow_s.get(dst, 0.0)
            self._push(self.now + lag + self.rng.uniform(*self.delay_s), "deliver", dst,
                       (send.msg, self.addr_of[sender]))

    def _note_events(self, observer: str, node: Swim) -> None:
        for when, member, state in node.events:
            if state == DEAD or state == LEFT:
                self.dead_seen.setdefault(member, {}).setdefault(observer, when)
                if state == DEAD and member not in self.crashed:
                    self.false_deaths.append((when, observer, member))
            elif state == ALIVE:
                self.alive_seen.setdefault(member, {}).setdefault(observer, when)
        node.events.clear()


def scaled(config: SwimConfig, factor: float) -> SwimConfig:
    """Every timing of `config` times `factor`: the same protocol, faster or slower (a
    2 s pause under lan timings / 5 is a 10 s pause under lan's own)."""
    return dataclasses.replace(config, **{name: getattr(config, name) * factor for name in (
        "probe_interval_s", "probe_timeout_s", "gossip_interval_s", "push_pull_interval_s",
        "gossip_to_dead_s", "dead_reclaim_s")})


def _datagram_cost(msg: Dict) -> int:
    return len(json.dumps(msg, separators=(",", ":"))) + WIRE_OVERHEAD_BYTES + DATAGRAM_COST_BYTES


def percentile(values: List[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]
