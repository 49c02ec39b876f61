"""The publish log on a supernode: durable, append-only, bounded; polled by daemons.

A publication (protocol/publications.py) is appended as one JSON line to
DATA/publications/log.jsonl and fsynced before anyone hears of it, so a
supernode that restarts still has every publication of the retention window
(--publication-keep, --publication-keep-count): the oldest leave the log once
too old or too many, and the file is then rewritten (to a temporary name,
renamed). The last seq handed out is kept beside it (head.json) so seqs never
go back, even when every publication has left. A line cut short by a crash
mid-write is dropped at start.

Daemons pull: a poll names the subscriber, its topics and the seq it has
fetched everything up to; it waits (long-polls) until a publication after that
seq exists or its wait is over. That works through NAT and across restarts of
either side, and the seq a daemon sends is also its acknowledgement: the
subscriptions table (GET /v1/subscriptions) shows each subscriber's patterns,
where it has caught up to and how many matching publications it is behind.

In a cluster every member keeps a full log of its own. Each member pulls the
others' publications after the last seq it took from each (a signed member
call, on its own thread), appending the ones it does not have yet under a seq
of its own; the publication's `id` stays the one it was first given, so a
daemon that moves to another member skips what it already fetched. A member
that was down catches up when it is back; a publish needs one live member.
"""
import json
import logging
import os
import threading
import time
import uuid
from typing import Callable, Dict, List, Optional, Sequence

from dfly.errors import BadRequest, DflyError
from dfly.protocol import publications as rules
from dfly.protocol.publications import Publication, Retention
from dfly.supernode.client import SupernodeClient

log = logging.getLogger("dfly.supernode")

MAX_SUBSCRIBERS = 10000
FORGET_SUBSCRIBER_S = 86400.0   # a subscriber silent this long leaves the table
MAX_COPIED_PER_CALL = 256


class PublicationLog:
    def __init__(self, folder: str, retention: Retention = Retention(),
                 wall_clock: Callable[[], float] = time.time, max_subscribers: int = MAX_SUBSCRIBERS):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, "log.jsonl")
        self.head_path = os.path.join(folder, "head.json")
        self.retention = retention
        self.wall_clock = wall_clock
        self._cond = threading.Condition()
        self._stopping = False
        self._log: List[Publication] = self._load()
        self._ids = {p.id for p in self._log}
        state = _read_json(self.head_path)
        # Names this log in publication ids ("<log>/<seq>"): unique across supernodes that
        # are not one cluster too (fallbacks a daemon lists), and across a lost data dir.
        self.log_id = state.get("log") if isinstance(state.get("log"), str) and state["log"] \
            else uuid.uuid4().hex[:16]
        self.head = max([state.get("head", 0) if isinstance(state.get("head"), int) else 0]
                        + [p.seq for p in self._log[-1:]])
        pulled = state.get("pulled")
        self.pulled: Dict[str, int] = ({k: v for k, v in pulled.items() if isinstance(v, int)}
                                       if isinstance(pulled, dict) else {})
        self._subscribers: Dict[str, dict] = {}
        self.max_subscribers = max_subscribers
        with self._cond:
            self._expire_locked(self.wall_clock())
            if state.get("log") != self.log_id:
                self._save_head_locked()

    def stop(self) -> None:
        """Wake the polls waiting (they answer at once)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    # appending -------------------------------------------------------------------------
    def publish(self, kind: str, url: str, names: Sequence[str], filters: Sequence[str],
                blobs: Sequence[tuple]) -> Publication:
        """`blobs`: an image's (digest, size, platforms)."""
        """Append a new publication (durable when this returns)."""
        with self._cond:
            seq = self.head + 1
            pub = Publication(seq, "%s/%d" % (self.log_id, seq), self.wall_clock(), kind, url,
                              tuple(names), tuple(filters),
                              tuple((b[0], b[1], tuple(b[2]) if len(b) > 2 else ()) for b in blobs))
            self._append_locked(pub)
        log.info("publication %d: %s %s (%d blobs)", pub.seq, kind, url[:200], len(blobs))
        return pub

    def copy(self, pub: Publication) -> Optional[Publication]:
        """Append another member's publication under our own seq, unless we have its id."""
        with self._cond:
            if pub.id in self._ids or self.wall_clock() - pub.at > self.retention.keep_s:
                return None
            mine = pub.renumbered(self.head + 1)
            self._append_locked(mine)
        log.info("publication %d copied from %s", mine.seq, pub.id)
        return mine

    def _append_locked(self, pub: Publication) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, pub.line())
            os.fsync(fd)
        finally:
            os.close(fd)
        self._log.append(pub)
        self._ids.add(pub.id)
        self.head = pub.seq
        self._save_head_locked()
        self._expire_locked(pub.at)
        self._cond.notify_all()

    def took_from(self, member: str, seq: int) -> None:
        """Remember how far this member's log has been copied."""
        with self._cond:
            if self.pulled.get(member) != seq:
                self.pulled[member] = seq
                self._save_head_locked()

    # reading ---------------------------------------------------------------------------
    def after(self, seq: int, limit: int = MAX_COPIED_PER_CALL) -> List[Publication]:
        with self._cond:
            return [p for p in self._log if p.seq > seq][:limit]

    def poll(self, poll: rules.Poll, client_host: str, deadline: float,
             clock: Callable[[], float] = time.monotonic) -> dict:
        """The poll's answer, once a publication after `poll.after` exists or at `deadline`
        (on `clock`); the subscriber's row is updated as it comes and goes."""
        with self._cond:
            # Past our head: this log was started afresh (a new data dir); from its start.
            after = poll.after if poll.after <= self.head else 0
            self._seen_locked(poll, after, client_host)
            while self.head == after and not self._stopping:
                left = deadline - clock()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._expire_locked(self.wall_clock())
            found, resume = rules.matching(self._log, after, poll.patterns)
            first = self._log[0].seq if self._log else self.head + 1
            missed = after + 1 < first and after < self.head
            if missed and not found:   # past what left the log, said once
                resume = max(resume, first - 1)
            return {"head": self.head, "first": first, "next": resume,
                    "missed": missed,
                    "restarted": after != poll.after,
                    "publications": [p.to_json() for p in found]}

    def _seen_locked(self, poll: rules.Poll, after: int, client_host: str) -> None:
        now = self.wall_clock()
        row = self._subscribers.get(poll.subscriber)
        if row is None:
            if len(self._subscribers) >= self.max_subscribers:   # the longest silent row goes (the
                # table only shows progress: a flood of ids must not lock real daemons out)
                oldest = min(self._subscribers.values(), key=lambda r: r["last_poll"])
                del self._subscribers[oldest["subscriber"]]
            row = self._subscribers[poll.subscriber] = {"subscriber": poll.subscriber,
                                                        "since": now}
        row.update(host=client_host, topics=[p.text for p in poll.patterns],
                   acknowledged=after, last_poll=now)

    def subscriptions(self) -> dict:
        """Who subscribed to what, and how far each has caught up."""
        with self._cond:   # a copy: the counting below must not hold up the polls
            now = self.wall_clock()
            self._forget_locked(now)
            log_now, head = list(self._log), self.head
            rows = [dict(r) for r in sorted(self._subscribers.values(), key=lambda r: r["subscriber"])]
        for row in rows:
            patterns = rules.topics.parse_patterns(row["topics"])
            behind, _ = rules.matching(log_now, row["acknowledged"], patterns, limit=len(log_now))
            row.update(head=head, behind=len(behind), seconds_since_poll=round(now - row["last_poll"], 1))
        return {"head": head, "first": log_now[0].seq if log_now else head + 1,
                "retained": len(log_now), "keep_s": self.retention.keep_s,
                "keep_count": self.retention.keep_count, "subscriptions": rows}

    def _forget_locked(self, now: float) -> None:
        for key in [k for k, r in self._subscribers.items()
                    if now - r["last_poll"] > FORGET_SUBSCRIBER_S]:
            del self._subscribers[key]

    # the file --------------------------------------------------------------------------
    def _load(self) -> List[Publication]:
        try:
            with open(self.path, "rb") as f:
                lines = f.read().split(b"\n")
        except FileNotFoundError:
            return []
        out, bad = [], 0
        for line in lines:
            if not line.strip():
                continue
            try:
                pub = rules.parse_line(line)
            except rules.BadRecord:
                bad += 1
                continue
            if not out or pub.seq > out[-1].seq:
                out.append(pub)
        if bad or not lines[-1] == b"":
            log.warning("publication log %s: %d unreadable line(s) dropped (a write cut short?)",
                        self.path, bad)
            self._rewrite(out)
        return out

    def _expire_locked(self, now: float) -> None:
        gone = rules.expired(self._log, now, self.retention)
        if not gone:
            return
        for pub in self._log[:gone]:
            self._ids.discard(pub.id)
        self._log = self._log[gone:]
        self._rewrite(self._log)

    def _rewrite(self, kept: List[Publication]) -> None:
        temp = "%s.%s.tmp" % (self.path, uuid.uuid4().hex[:8])
        with open(temp, "wb") as f:
            for pub in kept:
                f.write(pub.line())
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, self.path)

    def _save_head_locked(self) -> None:
        temp = "%s.%s.tmp" % (self.head_path, uuid.uuid4().hex[:8])
        with open(temp, "w") as f:
            json.dump({"head": self.head, "log": self.log_id, "pulled": self.pulled}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, self.head_path)


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            value = json.load(f)
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


class MemberCopier:
    """Copies the other members' publications into our log (in a cluster)."""

    def __init__(self, publications: PublicationLog, supernode, sign, interval_s: float):
        self.publications = publications
        self.supernode = supernode   # its membership and TLS
        self.sign = sign             # signs a member call (method, path, body) -> header
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supernode-publications", daemon=True)

    def start(self) -> "MemberCopier":
        if self.supernode.membership is not None:   # alone there is no one to copy from: no thread
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            membership = self.supernode.membership
            if membership is None:
                continue
            for member in membership.sync_targets():
                if member != self.supernode.me and not self._stop.is_set():
                    self.copy_from(member)

    def copy_from(self, member: str) -> int:
        """Copy what `member` published since we last asked; how many were new to us."""
        client = SupernodeClient(member, timeout_s=max(1.0, self.interval_s * 2), tls=self.supernode.tls)
        added = 0
        try:
            after = self.publications.pulled.get(member, 0)
            reply = client.member_publications(after, self.sign)
            if reply.get("head", 0) < after:   # it lost its log (a new data dir): all again
                after = 0
                reply = client.member_publications(0, self.sign)
            last = after
            for doc in reply.get("publications", []):
                try:
                    pub = rules.parse(doc)
                except rules.BadRecord:
                    break
                if self.publications.copy(pub) is not None:
                    added += 1
                last = max(last, pub.seq)
            self.publications.took_from(member, last)
        except DflyError as e:
            log.debug("copying publications from %s: %s", member, e)
        finally:
            client.close()
        return added


class PubSub:
    """What the publish/subscribe endpoints do, as plain calls (server.py only decodes)."""

    def __init__(self, publications: PublicationLog, supernode, preheater):
        self.publications = publications
        self.supernode = supernode
        self.preheater = preheater

    def publish(self, body, authorization: str, client_host: str) -> dict:
        """POST /v1/publications: a preheat with scope all_peers; published when it succeeds."""
        self.preheater.check_auth(authorization)
        views, _ = self.preheater.submit(rules.parse_publish(body), client_host)
        return views["v2"]

    def poll(self, query: Dict[str, List[str]], client_host: str, proof: str) -> dict:
        """GET /v1/publications: the subscriber proves its peer id as a peer does."""
        poll = rules.parse_poll(query)
        secret = self.supernode._admit(poll.subscriber, proof, self.supernode.clock())
        reply = self.publications.poll(poll, client_host, time.monotonic() + poll.wait_s)
        reply["peer_secret"] = secret
        return reply

    def subscriptions(self) -> dict:
        return self.publications.subscriptions()

    def member_publications(self, call, body) -> dict:
        """Member to member (signed): our publications after `after`."""
        self.supernode.check_member(call)
        after = body.get("after") if isinstance(body, dict) else None
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise BadRequest("field 'after': a publication seq (0 or more)")
        return {"head": self.publications.head,
                "publications": [p.to_json() for p in self.publications.after(after)]}
