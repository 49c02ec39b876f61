"""Gossip mode's scheduler cluster: the supernode HA cluster with its member list
taken from gossip instead of `--cluster`.

Each gossip daemon runs a scheduler (the supernode's service) in its own
process and says where in its gossip metadata ("sn"). A task's home set is the
top HOME_SIZE live schedulers by rendezvous hash of the task id; the first of
them schedules the task and fetches it from the source (so 50 daemons asking
for one new file cause one source fetch), the others hold copies of its piece
digests and take over, in order, when it dies. Liveness is the gossip view
(alive or suspect counts as live, as memberlist does); the HA code's pings
then only carry which tasks a member is serving (ownership stays sticky).
"""
import hashlib
import hmac
import random
from collections import defaultdict
from typing import List

from dfly.gossip.swim import ALIVE, SUSPECT
from dfly.supernode.cluster import Membership, rendezvous_owner

HOME_SIZE = 3
SYNC_FANOUT = 3


def cluster_secret(keyring) -> str:
    """The scheduler cluster's signing secret, derived from the gossip key that signs
    (the first of the ring): one key file configures both."""
    return cluster_secrets(keyring)[0]


def cluster_secrets(keyring) -> List[str]:
    """One secret per key of the ring, the signing one first. A scheduler takes a call
    signed with any of them, as the gossip layer takes a packet under any key of the
    ring: members mid-roll (some signing with the new key, some with the old one)
    keep scheduling together."""
    return [hmac.new(key, b"dfly scheduler cluster", hashlib.sha256).hexdigest() for key in keyring.keys]


def homes(task_id: str, members: List[str], size: int = HOME_SIZE) -> List[str]:
    """The task's home set, best first: the same on every member with the same view."""
    left, out = list(members), []
    while left and len(out) < size:
        best = rendezvous_owner(task_id, left)
        out.append(best)
        left.remove(best)
    return out


class GossipMembership(Membership):
    def __init__(self, me: str, node, now: float):
        self.node = node   # first: the base class reads `members`
        super().__init__(me, [me], dead_after_s=float("inf"), now=now)
        self._active = defaultdict(set)

    @property
    def members(self) -> List[str]:
        return sorted(set(self._schedulers(live_only=False)) | {self.me})

    @members.setter
    def members(self, value) -> None:   # the base class sets it once; the view is live
        pass

    def alive(self, now: float) -> List[str]:
        return sorted(set(self._schedulers(live_only=True)) | {self.me})

    def others(self) -> List[str]:
        return [m for m in self.alive(0.0) if m != self.me]

    def __contains__(self, member: str) -> bool:   # the verifier takes signed calls from these
        return member in self._schedulers(live_only=True)

    def heard_from(self, member: str, active_tasks, now: float) -> None:
        self._active[member] = set(active_tasks)

    def signing_secrets(self) -> List[str]:
        return cluster_secrets(self.node.keyring)

    def sync_targets(self) -> List[str]:
        """A few members a round, not all: liveness is gossip's, digests are pushed to
        the home sets, so the pings only spread who serves what (N - 1 requests every
        round per member would not scale to hundreds)."""
        others = self.others()
        return random.sample(others, min(SYNC_FANOUT, len(others)))

    def replica_targets(self, task_id: str, now: float) -> List[str]:
        return [m for m in homes(task_id, self.alive(now)) if m != self.me]

    def keeps_replica(self, task_id: str, now: float) -> bool:
        return self.me in homes(task_id, self.alive(now))

    def status(self, now: float) -> List[dict]:
        alive = set(self.alive(now))
        return [{"member": m, "self": m == self.me, "alive": m in alive, "active_tasks": len(self._active[m])}
                for m in self.members]

    def _schedulers(self, live_only: bool) -> List[str]:
        out = []
        for state, meta in self.node.metas():
            sn = meta.get("sn") if isinstance(meta, dict) else None
            if isinstance(sn, str) and (not live_only or state in (ALIVE, SUSPECT)):
                out.append(sn)
        return out
