"""Supernode cluster membership and task ownership (pure: `now` is passed in),
and the store of other members' task metadata.

Every member lists all members (`--cluster`). Each pings the others about once
a second; a member not heard from for `dead_after_s` is dead. A task's owner is
chosen by rendezvous hashing over the live members, so every member computes
the same owner without talking, and a death moves only the dead member's tasks.

Ownership is sticky: a member that is actively serving a task (it says so in
its ping replies) stays its owner even when the hash would now pick another
(say the first owner came back), so a running swarm is never split in two.
"""
import hashlib
import json
import os
import threading
from typing import Dict, Iterable, List, Optional, Set


def rendezvous_owner(task_id: str, members: Iterable[str]) -> Optional[str]:
    """The member with the highest hash of (member, task): the same everywhere."""
    best, best_score = None, b""
    for member in members:
        score = hashlib.sha256(("%s|%s" % (member, task_id)).encode()).digest()
        if best is None or score > best_score:
            best, best_score = member, score
    return best


class Membership:
    def __init__(self, me: str, members: Iterable[str], dead_after_s: float, now: float):
        self.me = me
        self.members = sorted(set(members) | {me})
        self.dead_after_s = dead_after_s
        self._last_seen: Dict[str, float] = {m: now for m in self.members}
        self._active: Dict[str, Set[str]] = {m: set() for m in self.members}

    def heard_from(self, member: str, active_tasks: Iterable[str], now: float) -> None:
        if member in self._last_seen:
            self._last_seen[member] = now
            self._active[member] = set(active_tasks)

    def alive(self, now: float) -> List[str]:
        return [m for m in self.members
                if m == self.me or now - self._last_seen[m] <= self.dead_after_s]

    def owner(self, task_id: str, now: float, serving_here: bool = False) -> str:
        """Who serves `task_id` now: a live member already serving it, else the hash owner."""
        if serving_here:
            return self.me
        alive = self.alive(now)
        serving = [m for m in alive if m != self.me and task_id in self._active[m]]
        if serving:
            return rendezvous_owner(task_id, serving)
        return rendezvous_owner(task_id, alive)

    def others(self) -> List[str]:
        return [m for m in self.members if m != self.me]

    def signing_secrets(self) -> List[str]:
        """Every secret a member may sign with besides --cluster-secret (gossip mode:
        one per key of the gossip key ring, so a key roll does not split the cluster)."""
        return []

    def sync_targets(self) -> List[str]:
        """Whom to ping this round: every other member (a static cluster is small)."""
        return self.others()

    def replica_targets(self, task_id: str, now: float) -> List[str]:
        """Who gets a task's piece digests before a peer is offered the piece: every
        live member (a static cluster is small)."""
        return [m for m in self.alive(now) if m != self.me]

    def keeps_replica(self, task_id: str, now: float) -> bool:
        """Does this member copy the metadata of another member's task? Every one does."""
        return True

    def status(self, now: float) -> List[dict]:
        alive = set(self.alive(now))
        return [{"member": m, "self": m == self.me, "alive": m in alive,
                 "last_seen_s_ago": 0.0 if m == self.me else round(now - self._last_seen[m], 3),
                 "active_tasks": len(self._active[m])} for m in self.members]


class ReplicaStore:
    """Other members' task metadata (URL, geometry, piece digests), kept on disk
    so a member that restarts can still take a task over."""

    def __init__(self, folder: str):
        self.folder = folder
        self._replicas: Dict[str, dict] = {}
        self._lock = threading.Lock()
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            try:
                with open(os.path.join(folder, name)) as f:
                    self._replicas[name[:-5]] = json.load(f)
            except (OSError, ValueError):
                continue

    def get(self, task_id: str) -> Optional[dict]:
        with self._lock:
            return self._replicas.get(task_id)

    def count(self, task_id: str) -> int:
        with self._lock:
            return len(self._replicas.get(task_id, {}).get("digests", ()))

    def newer(self, task_id: str, replica: dict) -> bool:
        """Does `replica` know more than the copy we have: more digests, or
        another content version (the source was cut afresh)?"""
        with self._lock:
            have = self._replicas.get(task_id)
        if have is None:
            return True
        if (replica.get("content_version") or "") != (have.get("content_version") or ""):
            return True
        return len(replica.get("digests") or ()) > len(have.get("digests", ()))

    def ids(self) -> List[str]:
        with self._lock:
            return list(self._replicas)

    def put(self, task_id: str, replica: dict) -> None:
        if not isinstance(replica.get("digests"), list):
            return
        path = os.path.join(self.folder, task_id + ".json")
        with open(path + ".tmp", "w") as f:
            json.dump(replica, f)
        os.replace(path + ".tmp", path)
        with self._lock:
            self._replicas[task_id] = replica
