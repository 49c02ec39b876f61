"""SWIM membership with the Lifeguard refinements, as a pure state machine.

Strategy (HashiCorp memberlist's, see docs/GOSSIP.md): every probe interval a
member pings the next member of a shuffled round; no ack within the probe
timeout sends ping-req to k others, who ping the target for it and answer with
an ack (target alive) or a nack (relay alive, target silent). No ack by the end
of the interval makes the target *suspect*; a suspect that does not refute
(alive with a higher incarnation) before its suspicion timeout is *dead*.
Updates ride on pings, acks and a fast gossip round, each sent a bounded
number of times (retransmit_mult x log10 N); a periodic TCP push-pull of the
whole member list heals partitions and brings joiners up to date.

Lifeguard, when on: the suspicion timeout starts at max and shrinks towards
min as other members independently suspect the same member (a lone slow
accuser cannot kill anyone quickly); a member's own health score ("awareness",
0..awareness_max-1) grows with missed nacks and refuted suspicions of itself
and stretches its probe interval and timeout, so a member that is the slow one
accuses less; a probe of a member one suspects carries the suspicion, and every
other probe goes to such a member (the buddy system: the suspect hears of it
and refutes even when the gossip was lost). Off, it is plain SWIM with a fixed
suspicion timeout (the minimum), as the simulations compare.

Pure: no sockets, no clock, no threads. `receive(msg, now)` and `tick(now)`
return the messages to send (`Send`); `next_wakeup()` says when to call `tick`.
Messages are plain dicts; dfly/gossip/wire.py signs and encodes them.
"""
import math
import random
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

ALIVE, SUSPECT, DEAD, LEFT = "alive", "suspect", "dead", "left"
Address = Tuple[str, int]


@dataclass(frozen=True)
class SwimConfig:
    probe_interval_s: float = 1.0
    probe_timeout_s: float = 0.5
    indirect_checks: int = 3
    suspicion_mult: int = 4          # min suspicion = mult x max(1, log10 N) x probe interval
    suspicion_max_mult: int = 6      # max = this x min (Lifeguard)
    retransmit_mult: int = 4         # each update sent retransmit_mult x ceil(log10(N+1)) times
    gossip_interval_s: float = 0.2
    gossip_nodes: int = 3
    push_pull_interval_s: float = 30.0
    gossip_to_dead_s: float = 30.0   # dead members still get gossip (to learn and refute)
    dead_reclaim_s: float = 120.0    # then they are forgotten
    reconnect_s: float = 3600.0      # a dead member's address is tried at each push-pull this long
    awareness_max: int = 8
    lifeguard: bool = True
    max_updates_bytes: int = 1100    # piggybacked updates per packet (packets stay < 1400 B)


PROFILES = {
    "lan": SwimConfig(),
    "fast": SwimConfig(probe_interval_s=0.5, probe_timeout_s=0.25, suspicion_mult=3,
                       gossip_interval_s=0.1, push_pull_interval_s=15.0, gossip_to_dead_s=15.0),
}


@dataclass
class Member:
    name: str
    addr: Address
    meta: Dict
    incarnation: int = 0
    state: str = ALIVE
    since: float = 0.0


@dataclass
class Send:
    """One message for the adapter: over UDP, or TCP when `reliable`."""
    addr: Address
    msg: Dict
    reliable: bool = False


@dataclass
class _Suspicion:
    start: float
    min_s: float
    max_s: float
    k: int
    accuser: str
    confirmers: Set[str] = field(default_factory=set)

    def deadline(self) -> float:
        """From max with no confirmations down to min with k of them (log-shaped)."""
        if self.k < 1:
            return self.start + self.min_s
        frac = math.log(min(len(self.confirmers), self.k) + 1) / math.log(self.k + 1)
        return self.start + max(self.min_s, self.max_s - (self.max_s - self.min_s) * frac)


@dataclass
class _Probe:
    target: str
    seq: int
    deadline: float       # end of the direct stage, then of the indirect one
    ends: float           # end of this probe interval
    indirect: bool = False
    nacks_expected: int = 0
    nacks: int = 0


@dataclass
class _Relay:
    requester: Address
    their_seq: int
    target: str
    nack_at: float


class _Broadcasts:
    """Updates waiting to be piggybacked; the least-sent first, each at most
    `limit` times; a newer update about a member replaces the older one. Kept in
    buckets by times sent, so a packet touches only the updates it takes (a
    joiner of a big cluster queues one per member)."""

    def __init__(self):
        self._sent: Dict[str, int] = {}            # member name -> times its update was sent
        self._buckets: List[Dict[str, Tuple[Dict, int]]] = []  # times sent -> {name: (update, size)}

    def __len__(self) -> int:
        return len(self._sent)

    def add(self, update: Dict) -> None:
        name = update["n"]
        if name in self._sent:
            del self._buckets[self._sent[name]][name]
        self._sent[name] = 0
        self._bucket(0)[name] = (update, _size(update))

    def take(self, limit: int, budget_bytes: int) -> List[Dict]:
        chosen, used, moves = [], 0, []
        for count, bucket in enumerate(self._buckets):
            for name, item in bucket.items():
                update, size = item
                if used + size > budget_bytes:
                    break
                chosen.append(update)
                used += size
                moves.append((name, item, count))
            if used >= budget_bytes - 40:
                break
        for name, item, count in moves:
            del self._buckets[count][name]
            if count + 1 >= limit:
                del self._sent[name]
            else:
                self._sent[name] = count + 1
                self._bucket(count + 1)[name] = item
        return chosen

    def _bucket(self, count: int) -> Dict[str, Tuple[Dict, int]]:
        while len(self._buckets) <= count:
            self._buckets.append({})
        return self._buckets[count]


def _size(update: Dict) -> int:
    # A cheap, stable estimate of the JSON size: exact sizes would cost a dumps per update.
    extra = len(str(update.get("a", ""))) + len(str(update.get("m", ""))) if "a" in update else 0
    return 40 + len(update["n"]) + extra


class Swim:
    def __init__(self, name: str, addr: Address, meta: Dict, config: SwimConfig,
                 rng: random.Random, now: float):
        self.name = name
        self.config = config
        self.rng = rng
        self.me = Member(name, tuple(addr), dict(meta), incarnation=0, state=ALIVE, since=now)
        self.members: Dict[str, Member] = {name: self.me}
        self.awareness = 0
        self.counters: Dict[str, int] = {}
        self.events: List[Tuple[float, str, str]] = []   # (when, member, new state), for the caller to drain
        self._seq = 0
        self._round: List[str] = []
        self._recheck = False
        self._live: Optional[int] = None
        self._targets: Optional[List[Member]] = None
        self._by_addr: Dict[Address, str] = {tuple(addr): name}   # the last member to claim an address
        self._reclaim_at: Optional[float] = None
        self._probe: Optional[_Probe] = None
        self._relays: Dict[int, _Relay] = {}
        self._suspicions: Dict[str, _Suspicion] = {}
        self._broadcasts = _Broadcasts()
        self._next_probe = now + rng.uniform(0, config.probe_interval_s)
        self._next_gossip = now + config.gossip_interval_s
        self._next_push_pull = now + rng.uniform(0, config.push_pull_interval_s)
        self._joins: List[Address] = []
        self._lost: Dict[str, Tuple[Address, float]] = {}   # dead members to try again (a partition heals)
        self.left = False

    # views ---------------------------------------------------------------------------
    def view(self) -> List[Dict]:
        return [{"name": m.name, "addr": list(m.addr), "state": m.state, "incarnation": m.incarnation,
                 "meta": m.meta} for m in sorted(self.members.values(), key=lambda m: m.name)]

    def live_count(self) -> int:
        if self._live is None:   # kept until a member changes state: asked for on every packet
            self._live = sum(1 for m in self.members.values() if m.state in (ALIVE, SUSPECT))
        return self._live

    def next_wakeup(self) -> float:
        times = [self._next_probe, self._next_push_pull]
        if self._probe is not None:
            times.append(self._probe.deadline)
        if self._broadcasts:
            times.append(self._next_gossip)
        times.extend(r.nack_at for r in self._relays.values())
        times.extend(s.deadline() for s in self._suspicions.values())
        if self._reclaim_at is None:
            gone = [m.since for m in self.members.values() if m.state in (DEAD, LEFT)]
            self._reclaim_at = min(gone) + self.config.dead_reclaim_s if gone else float("inf")
        times.append(self._reclaim_at)
        return min(times)

    # commands ------------------------------------------------------------------------
    def join(self, addrs: List[Address], now: float) -> List[Send]:
        """Exchange full state with each address (TCP push-pull)."""
        self._joins = [tuple(a) for a in addrs]
        return [Send(tuple(a), self._sync_msg("sync", join=True), reliable=True)
                for a in self._joins if tuple(a) != self.me.addr]

    def leave(self, now: float) -> List[Send]:
        """Say goodbye: others mark us left (not dead) at once."""
        self.left = True
        self.me.incarnation += 1
        self._broadcasts.add({"k": DEAD, "n": self.name, "i": self.me.incarnation, "by": self.name})
        return self._gossip(now, fanout=max(self.config.gossip_nodes, 3))

    def tick(self, now: float) -> List[Send]:
        out: List[Send] = []
        out += self._expire_relays(now)
        out += self._expire_probe(now)
        for name in [n for n, s in self._suspicions.items() if s.deadline() <= now]:
            out += self._declare_dead(name, now)
        self._reclaim(now)
        if now >= self._next_probe:
            out += self._start_probe(now)
        if now >= self._next_gossip:
            self._next_gossip = now + self.config.gossip_interval_s
            out += self._gossip(now)
        if now >= self._next_push_pull:
            self._next_push_pull = now + self._push_pull_interval()
            out += self._push_pull(now)
        return out

    def receive(self, msg: Dict, src: Address, now: float) -> List[Send]:
        """Apply one message (already authenticated by the wire layer) that came from
        `src`, where replies go."""
        if self.left:
            return []
        kind = msg.get("t")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self._count("messages_unknown")
            return []
        return self._apply_updates(msg.get("u", []), now) + handler(self, msg, tuple(src), now)

    # probing ---------------------------------------------------------------------------
    def _scale(self) -> int:
        return self.awareness + 1 if self.config.lifeguard else 1

    def _start_probe(self, now: float) -> List[Send]:
        self._next_probe = now + self.config.probe_interval_s * self._scale()
        if self._probe is not None:
            return []
        target = self._next_target()
        if target is None:
            return []
        self._seq += 1
        timeout = self.config.probe_timeout_s * self._scale()
        self._probe = _Probe(target.name, self._seq, now + timeout, self._next_probe)
        self._count("probes")
        msg = self._msg("ping", seq=self._seq, to=target.name)
        if target.state == SUSPECT and self.config.lifeguard:   # tell it (Lifeguard's buddy system)
            msg["u"] = [self._suspect_update(target, self.name)] + msg["u"]
        return [Send(target.addr, msg)]

    def _next_target(self) -> Optional[Member]:
        # With Lifeguard, every other probe goes to a member we suspect ourselves, with the
        # news: it can refute even when the gossip that carried the suspicion was lost.
        self._recheck = not self._recheck and self.config.lifeguard
        mine = [n for n, s in self._suspicions.items() if s.accuser == self.name]
        if self._recheck and mine:
            return self.members[self.rng.choice(sorted(mine))]
        for _ in range(2):
            while self._round:
                m = self.members.get(self._round.pop())
                if m is not None and m.name != self.name and m.state in (ALIVE, SUSPECT):
                    return m
            self._round = [n for n in self.members if n != self.name]
            self.rng.shuffle(self._round)
        return None

    def _expire_probe(self, now: float) -> List[Send]:
        p = self._probe
        if p is None or now < p.deadline:
            return []
        target = self.members.get(p.target)
        if target is None or target.state not in (ALIVE, SUSPECT):
            self._probe = None
            return []
        if not p.indirect:
            relays = [m for m in self.members.values()
                      if m.name not in (self.name, p.target) and m.state == ALIVE]
            relays = self.rng.sample(relays, min(self.config.indirect_checks, len(relays)))
            p.indirect, p.deadline = True, max(p.ends, now + self.config.probe_timeout_s)
            p.nacks_expected = len(relays)
            return [Send(r.addr, self._msg("ping-req", seq=p.seq, target=target.name,
                                           addr=list(target.addr))) for r in relays]
        self._probe = None
        self._count("probes_failed")
        missed = p.nacks_expected - p.nacks if p.nacks_expected else 1
        self._health(+missed)
        return self._suspect(target, self.name, now)

    def _on_ping(self, msg: Dict, src: Address, now: float) -> List[Send]:
        if msg.get("to") != self.name:   # meant for whoever had this address before us
            self._count("pings_misaddressed")
            return []
        return [Send(src, self._msg("ack", seq=msg.get("seq")))]

    def _on_ping_req(self, msg: Dict, src: Address, now: float) -> List[Send]:
        target = self.members.get(str(msg.get("target")))
        if target is None or len(self._relays) >= 64:   # bounded: a flood of ping-reqs costs little
            return []
        self._seq += 1
        self._relays[self._seq] = _Relay(src, msg.get("seq"), target.name,
                                         now + 0.8 * self.config.probe_timeout_s)
        return [Send(target.addr, self._msg("ping", seq=self._seq, to=target.name))]

    def _on_ack(self, msg: Dict, src: Address, now: float) -> List[Send]:
        seq = msg.get("seq")
        relay = self._relays.pop(seq, None)
        if relay is not None:   # an ack for a ping we sent for someone else: pass it on
            return [Send(relay.requester, self._msg("ack", seq=relay.their_seq))]
        p = self._probe
        if p is not None and seq == p.seq:
            self._probe = None
            self._health(-1)
            self._count("probes_acked")
        return []

    def _on_nack(self, msg: Dict, src: Address, now: float) -> List[Send]:
        p = self._probe
        if p is not None and msg.get("seq") == p.seq:
            p.nacks += 1
        return []

    def _expire_relays(self, now: float) -> List[Send]:
        out = []
        for seq in [s for s, r in self._relays.items() if r.nack_at <= now]:
            relay = self._relays.pop(seq)
            if self.config.lifeguard:
                out.append(Send(relay.requester, self._msg("nack", seq=relay.their_seq)))
        return out

    def _health(self, delta: int) -> None:
        if self.config.lifeguard:
            self.awareness = min(max(self.awareness + delta, 0), self.config.awareness_max - 1)

    # dissemination -----------------------------------------------------------------------
    def _retransmit_limit(self) -> int:
        return self.config.retransmit_mult * max(1, math.ceil(math.log10(self.live_count() + 1)))

    def _msg(self, kind: str, **fields) -> Dict:
        msg = {"t": kind, "from": self.name}
        msg.update(fields)
        msg["u"] = self._broadcasts.take(self._retransmit_limit(), self.config.max_updates_bytes)
        return msg

    def _gossip(self, now: float, fanout: int = 0) -> List[Send]:
        if not self._broadcasts:
            return []
        if self._targets is None:   # kept until a member changes state: this runs 5 times a second
            horizon = now - self.config.gossip_to_dead_s
            self._targets = [m for m in self.members.values() if m.name != self.name
                             and (m.state in (ALIVE, SUSPECT) or m.since >= horizon)]
        targets = self._targets
        out = []
        for m in self.rng.sample(targets, min(fanout or self.config.gossip_nodes, len(targets))):
            msg = self._msg("gossip")
            if msg["u"]:
                out.append(Send(m.addr, msg))
        return out

    def _on_gossip(self, msg: Dict, src: Address, now: float) -> List[Send]:
        return []

    # full-state sync -----------------------------------------------------------------------
    def _push_pull_interval(self) -> float:
        n = self.live_count()   # memberlist's scaling: fewer syncs per member in big clusters
        scale = 1 if n <= 32 else math.ceil(math.log2(n) - math.log2(32)) + 1
        return self.config.push_pull_interval_s * scale

    def _push_pull(self, now: float) -> List[Send]:
        others = [m for m in self.members.values() if m.name != self.name and m.state == ALIVE]
        if not others:   # alone (everyone died, or a partition): retry the join addresses
            return [Send(a, self._sync_msg("sync", join=True), reliable=True)
                    for a in self._joins if a != self.me.addr]
        out = [Send(self.rng.choice(others).addr, self._sync_msg("sync"), reliable=True)]
        for name in [n for n, (_, since) in self._lost.items() if now - since > self.config.reconnect_s]:
            del self._lost[name]
        if self._lost:   # as Serf does: a member on the far side of a partition may be back
            addr, _ = self._lost[self.rng.choice(sorted(self._lost))]
            out.append(Send(addr, self._sync_msg("sync"), reliable=True))
        return out

    def _sync_msg(self, kind: str, join: bool = False) -> Dict:
        return {"t": kind, "from": self.name, "join": join,
                "members": [{"n": m.name, "a": list(m.addr), "m": m.meta, "i": m.incarnation, "s": m.state}
                            for m in self.members.values()]}

    def _on_sync(self, msg: Dict, src: Address, now: float) -> List[Send]:
        out = self._merge(msg, now)
        return out + [Send(src, self._sync_msg("sync-reply"), reliable=True)]

    def _on_sync_reply(self, msg: Dict, src: Address, now: float) -> List[Send]:
        return self._merge(msg, now)

    def _merge(self, msg: Dict, now: float) -> List[Send]:
        members = msg.get("members")
        updates = []
        for m in members[:4096] if isinstance(members, list) else []:
            if isinstance(m, dict):
                updates.extend(_updates_of_remote(m, str(msg.get("from", ""))))
        return self._apply_updates(updates, now, limit=len(updates))

    # applying updates ------------------------------------------------------------------------
    def _apply_updates(self, updates, now: float, limit: int = 256) -> List[Send]:
        out: List[Send] = []
        if not isinstance(updates, list):
            return out
        for u in updates[:limit]:
            if not (isinstance(u, dict) and isinstance(u.get("n"), str) and isinstance(u.get("i"), int)
                    and not isinstance(u.get("i"), bool) and u["i"] >= 0 and len(u["n"]) <= 128):
                self._count("updates_malformed")
                continue
            kind = u.get("k")
            if kind == ALIVE:
                out += self._alive(u, now)
            elif kind == SUSPECT:
                m = self.members.get(u["n"])
                if m is not None:
                    out += self._suspect(m, str(u.get("by", "")), now, u["i"])
            elif kind == DEAD:
                out += self._dead(u, now)
            else:
                self._count("updates_malformed")
        return out

    def _alive(self, u: Dict, now: float) -> List[Send]:
        name, inc = u["n"], u["i"]
        addr = _address(u.get("a"))
        meta = u.get("m") if isinstance(u.get("m"), dict) else {}
        if addr is None:
            self._count("updates_malformed")
            return []
        if name == self.name:
            if inc > self.me.incarnation or (addr != self.me.addr and inc == self.me.incarnation):
                return self._refute(inc, now)   # someone has an older or a false picture of us
            return []
        m = self.members.get(name)
        if m is None:
            holder = self._holder_of(addr)
            if holder is not None:
                self._count("address_conflicts")   # another live member has that address
                return []
            if len(self.members) >= 65536:
                self._count("members_refused")
                return []
            m = Member(name, addr, meta, inc, ALIVE, now)
            self._lost.pop(name, None)
            self.members[name] = m
            self._by_addr[addr] = name
            self._broadcasts.add(self._alive_update(m))
            self._event(now, name, ALIVE)
            return []
        if inc <= m.incarnation:
            return []
        if addr != m.addr and m.state in (ALIVE, SUSPECT):
            holder = self._holder_of(addr)
            if holder is not None and holder.name != name:
                self._count("address_conflicts")
                return []
        back = m.state != ALIVE
        m.addr, m.meta, m.incarnation, m.state = addr, meta, inc, ALIVE
        self._by_addr[addr] = name
        self._lost.pop(name, None)
        if back:
            m.since = now
            self._event(now, name, ALIVE)
        self._suspicions.pop(name, None)
        self._broadcasts.add(self._alive_update(m))
        return []

    def _holder_of(self, addr: Address) -> Optional[Member]:
        m = self.members.get(self._by_addr.get(addr, ""))
        return m if m is not None and m.addr == addr and m.state in (ALIVE, SUSPECT) else None

    def _suspect(self, m: Member, accuser: str, now: float, inc: Optional[int] = None) -> List[Send]:
        inc = m.incarnation if inc is None else inc
        if m.name == self.name:
            if self.left:
                return []
            self._health(+1)
            return self._refute(inc, now)
        if inc < m.incarnation or m.state in (DEAD, LEFT):
            return []
        s = self._suspicions.get(m.name)
        if m.state == SUSPECT and s is not None:
            if accuser and accuser != s.accuser and accuser not in s.confirmers:
                s.confirmers.add(accuser)   # an independent confirmation shortens the wait
                self._broadcasts.add(self._suspect_update(m, accuser))
            return []
        m.incarnation, m.state, m.since = inc, SUSPECT, now
        n = self.live_count()
        min_s = self.config.suspicion_mult * max(1.0, math.log10(max(n, 1))) * self.config.probe_interval_s
        k = self.config.suspicion_mult - 2 if self.config.lifeguard else 0
        if n - 2 < k:
            k = 0
        max_s = min_s * self.config.suspicion_max_mult if self.config.lifeguard else min_s
        self._suspicions[m.name] = _Suspicion(now, min_s, max_s, k, accuser or self.name)
        self._broadcasts.add(self._suspect_update(m, accuser or self.name))
        self._count("suspicions")
        self._event(now, m.name, SUSPECT)
        return []

    def _dead(self, u: Dict, now: float) -> List[Send]:
        name, inc = u["n"], u["i"]
        m = self.members.get(name)
        if m is None or inc < m.incarnation or m.state in (DEAD, LEFT):
            return []
        if name == self.name:
            return [] if self.left else self._refute(inc, now)
        self._mark_dead(m, inc, LEFT if u.get("by") == name else DEAD, now)
        self._broadcasts.add({"k": DEAD, "n": name, "i": inc, "by": u.get("by", "")})
        return []

    def _declare_dead(self, name: str, now: float) -> List[Send]:
        s = self._suspicions.pop(name, None)
        m = self.members.get(name)
        if s is None or m is None or m.state != SUSPECT:
            return []
        self._mark_dead(m, m.incarnation, DEAD, now)
        self._count("declared_dead")
        self._broadcasts.add({"k": DEAD, "n": name, "i": m.incarnation, "by": self.name})
        return []

    def _mark_dead(self, m: Member, inc: int, state: str, now: float) -> None:
        m.incarnation, m.state, m.since = inc, state, now
        if state == DEAD:
            self._lost[m.name] = (m.addr, now)
            while len(self._lost) > 256:
                del self._lost[next(iter(self._lost))]
        self._suspicions.pop(m.name, None)
        if self._probe is not None and self._probe.target == m.name:
            self._probe = None
        self._event(now, m.name, state)

    def _refute(self, inc: int, now: float) -> List[Send]:
        self.me.incarnation = max(self.me.incarnation, inc) + 1
        self._count("refutations")
        self._broadcasts.add(self._alive_update(self.me))
        return []

    def _reclaim(self, now: float) -> None:
        if self._reclaim_at is not None and self._reclaim_at > now:
            return
        gone = [n for n, m in self.members.items()   # the same sum as next_wakeup's: no float gap
                if m.state in (DEAD, LEFT) and m.since + self.config.dead_reclaim_s <= now]
        for name in gone:
            if self._by_addr.get(self.members[name].addr) == name:
                del self._by_addr[self.members[name].addr]
            del self.members[name]
        if gone:
            self._reclaim_at = None

    def _alive_update(self, m: Member) -> Dict:
        return {"k": ALIVE, "n": m.name, "i": m.incarnation, "a": list(m.addr), "m": m.meta}

    def _suspect_update(self, m: Member, accuser: str) -> Dict:
        return {"k": SUSPECT, "n": m.name, "i": m.incarnation, "by": accuser}

    def _event(self, now: float, name: str, state: str) -> None:
        self._live = self._reclaim_at = self._targets = None   # every change of state comes here
        self.events.append((now, name, state))
        if len(self.events) > 1024:
            del self.events[:512]

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    _handlers = {"ping": _on_ping, "ping-req": _on_ping_req, "ack": _on_ack, "nack": _on_nack,
                 "gossip": _on_gossip, "sync": _on_sync, "sync-reply": _on_sync_reply}


def _updates_of_remote(m: Dict, sender: str) -> List[Dict]:
    """A member entry of a full-state sync as updates. A remote "dead" is only a
    suspicion here: it may be stale (memberlist does the same), and an unknown
    member is never brought in dead."""
    state = m.get("s")
    alive = {"k": ALIVE, "n": m.get("n"), "i": m.get("i"), "a": m.get("a"), "m": m.get("m")}
    suspect = {"k": SUSPECT, "n": m.get("n"), "i": m.get("i"), "by": sender}
    if state == ALIVE:
        return [alive]
    if state == SUSPECT:
        return [alive, suspect]
    if state == DEAD:
        return [suspect]
    if state == LEFT:
        return [{"k": DEAD, "n": m.get("n"), "i": m.get("i"), "by": m.get("n")}]
    return []


def _address(value) -> Optional[Address]:
    if (isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool) and 0 < value[1] < 65536
            and 0 < len(value[0]) <= 255):
        return (value[0], value[1])
    return None
