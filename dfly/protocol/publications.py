"""Publish/subscribe, as rules: what a publication is, how it is written in the
log, which ones a poll answers, what the retention window drops. Pure.

A publication is one item the supernode cluster holds and delivers to every
subscribed daemon whose topics match: an image (its config and layer blobs,
resolved by the preheat that published it) or a file (one URL). It is
numbered in the log of the member that keeps it (`seq`, from 1, never reused)
and named cluster-wide by `id` (the log that first took it, named at random
when it was created, and its seq there): members copy each other's publications, each under a seq of its own,
and a daemon that moves to another member skips the ids it already fetched.
No credentials are kept: the headers a publish came with are not logged.

Log line (one JSON object per line, appended):
  {"seq", "id", "at" (unix s), "kind": "image"|"file", "url", "names", "filters",
   "blobs": [[digest, size] or [digest, size, [platform, ...]] (from an image index)]}

Poll: GET /v1/publications?subscriber=ID&after=SEQ&topics=P1,P2&wait=S
  -> {"head", "first", "next", "missed", "publications": [...]}: the matching
  publications after SEQ (at most MAX_PER_POLL); `next` is the seq to send as
  `after` once they are fetched (past the ones that did not match); `missed`:
  publications after SEQ left the log before this subscriber came for them.
"""
import json
import re
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from dfly.errors import BadRequest
from dfly.protocol import oci, topics
from dfly.protocol import preheat as rules
from dfly.protocol.task import PEER_ID

MAX_PER_POLL = 64
MAX_WAIT_S = 30.0
ID = re.compile(r"\A[A-Za-z0-9_.:\[\]-]{1,300}/[0-9]{1,18}\Z")


class Publication(NamedTuple):
    seq: int
    id: str
    at: float
    kind: str                     # "image" or "file"
    url: str                      # the manifest URL or the file's URL (no credentials)
    names: Tuple[str, ...]        # an image's REGISTRY/REPOSITORY and REGISTRY/REPOSITORY:TAG
    filters: Tuple[str, ...]      # a file task's filtered query parameters
    blobs: Tuple[tuple, ...]      # an image's (digest, size, platforms: ("linux/amd64", ...) or ())

    def to_json(self) -> dict:
        return {"seq": self.seq, "id": self.id, "at": self.at, "kind": self.kind, "url": self.url,
                "names": list(self.names), "filters": list(self.filters),
                "blobs": [[b[0], b[1], list(b[2])] if b[2] else [b[0], b[1]] for b in self.blobs]}

    def line(self) -> bytes:
        return (json.dumps(self.to_json(), separators=(",", ":")) + "\n").encode()

    def renumbered(self, seq: int) -> "Publication":
        return self._replace(seq=seq)

    def blob_url(self, digest: str) -> str:
        return rules.image_ref(self.url).blob_url(digest)

    def size(self) -> int:
        return sum(b[1] for b in self.blobs)


class BadRecord(ValueError):
    """A log line or a member's copy that is not a publication."""


def parse(doc) -> Publication:
    """A publication from its JSON form (a log line, a member's reply, a poll reply)."""
    try:
        seq, pid, at, kind, url = doc["seq"], doc["id"], doc["at"], doc["kind"], doc["url"]
        names, filters, blobs = doc.get("names", []), doc.get("filters", []), doc.get("blobs", [])
        ok = (_is_int(seq) and seq > 0 and isinstance(pid, str) and ID.match(pid)
              and isinstance(at, (int, float)) and kind in rules.KINDS and isinstance(url, str)
              and 0 < len(url) <= 8192 and _strings(names) and _strings(filters)
              and isinstance(blobs, list) and len(blobs) <= rules.MAX_BLOBS
              and all(isinstance(b, list) and len(b) in (2, 3) and isinstance(b[0], str)
                      and oci.DIGEST.match(b[0]) and _is_int(b[1]) and b[1] >= 0
                      and (len(b) == 2 or _strings(b[2])) for b in blobs))
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise BadRecord("not a publication")
    return Publication(seq, pid, float(at), kind, url, tuple(names), tuple(filters),
                       tuple((b[0], b[1], tuple(b[2]) if len(b) == 3 else ()) for b in blobs))


def parse_line(line: bytes) -> Publication:
    try:
        return parse(json.loads(line.decode("utf-8")))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BadRecord(str(e))


def image_names(url: str) -> Tuple[str, ...]:
    """REGISTRY/REPOSITORY and REGISTRY/REPOSITORY:TAG (or @DIGEST) of a manifest URL."""
    ref = rules.image_ref(url)
    host = ref.base.split("://", 1)[1]
    name = "%s/%s" % (host, ref.name)
    joiner = "@" if oci.DIGEST.match(ref.reference) else ":"
    return (name, name + joiner + ref.reference)


def file_names(url: str) -> Tuple[str, ...]:
    """A file's name for name patterns: its URL without scheme, query or fragment
    (`files.example/models/a.bin`), so `*` and `files.example/*` take it too."""
    rest = url.split("://", 1)[-1]
    return (rest.split("#", 1)[0].split("?", 1)[0],)


def names_of(kind: str, url: str) -> Tuple[str, ...]:
    return image_names(url) if kind == "image" else file_names(url)


def parse_publish(body) -> rules.PreheatRequest:
    """`POST /v1/publications` {"type", "url", "headers", "platform", "filtered_query_params"}:
    a preheat with scope all_peers. A bad field is named."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    known = ("type", "url", "headers", "platform", "filtered_query_params")
    unknown = sorted(k for k in body if k not in known)
    if unknown:
        raise BadRequest("field %r: not a publish field (known: %s)" % (str(unknown[0])[:64],
                                                                       ", ".join(known)))
    if body.get("type") is None:
        body = dict(body, type="image" if _is_manifest_url(body.get("url")) else "file")
    wrapped = {"type": "preheat", "args": dict(body, scope=rules.SCOPE_ALL_PEERS)}
    try:
        return rules.parse_v2(wrapped)
    except BadRequest as e:   # its fields are named args.X: here they are top-level
        raise BadRequest(str(e).replace("'args.", "'"))


def _is_manifest_url(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        rules.image_ref(value)
        return True
    except BadRequest:
        return False


def platform_wanted(platforms: Sequence[str], wanted: Sequence[str]) -> bool:
    """Is a blob for `platforms` one a daemon wanting `wanted` fetches? Yes when either is
    empty (an image of one platform; a daemon taking all), or when one of them is wanted
    (`linux/arm64` takes `linux/arm64/v8` too)."""
    if not platforms or not wanted:
        return True
    return any(p == w or p.startswith(w + "/") for p in platforms for w in wanted)


def parse_platforms(values: Sequence[str]) -> Tuple[str, ...]:
    """--subscribe-platform values, checked (ValueError naming the bad one)."""
    for value in values:
        if not rules.PLATFORM.match(value):
            raise ValueError("--subscribe-platform %r: must be os/arch[/variant], as linux/amd64"
                             % value[:80])
    return tuple(values)


class Poll(NamedTuple):
    subscriber: str
    after: int
    patterns: Tuple[topics.Pattern, ...]
    wait_s: float


def parse_poll(query: Dict[str, List[str]]) -> Poll:
    """The query of GET /v1/publications; BadRequest naming the parameter."""
    subscriber = _one(query, "subscriber")
    if not PEER_ID.match(subscriber):
        raise BadRequest("parameter 'subscriber': a peer id ([A-Za-z0-9_.-], at most 64), got %r"
                         % subscriber[:80])
    after = _one(query, "after", "0")
    if not re.match(r"\A[0-9]{1,18}\Z", after):
        raise BadRequest("parameter 'after': a publication seq (0 or more), got %r" % after[:40])
    try:
        patterns = tuple(topics.parse_patterns(topics.split_topics(_one(query, "topics"))))
    except BadRequest as e:
        raise BadRequest("parameter 'topics': %s" % e)
    if not patterns:
        raise BadRequest("parameter 'topics': at least one pattern")
    wait = _one(query, "wait", "0")
    if not re.match(r"\A[0-9]{1,3}(\.[0-9]{1,3})?\Z", wait):
        raise BadRequest("parameter 'wait': seconds, got %r" % wait[:40])
    return Poll(subscriber, int(after), patterns, min(float(wait), MAX_WAIT_S))


def _one(query: Dict[str, List[str]], name: str, default: Optional[str] = None) -> str:
    values = query.get(name) or []
    if len(values) > 1:
        raise BadRequest("parameter %r given %d times" % (name, len(values)))
    if not values:
        if default is None:
            raise BadRequest("parameter %r: missing" % name)
        return default
    return values[0]


def matching(log: Sequence[Publication], poll_after: int, patterns: Sequence[topics.Pattern],
             limit: int = MAX_PER_POLL) -> Tuple[List[Publication], int]:
    """(the publications after `poll_after` the patterns take, at most `limit`; the seq
    to resume after). `log` is in seq order."""
    found, resume = [], poll_after
    for pub in log:
        if pub.seq <= poll_after:
            continue
        if topics.any_matches(patterns, pub.url, pub.names):
            if len(found) == limit:
                break
            found.append(pub)
        resume = pub.seq
    return found, resume


class Retention(NamedTuple):
    keep_s: float = 7 * 86400.0
    keep_count: int = 1000


def expired(log: Sequence[Publication], now: float, retention: Retention) -> int:
    """How many of the oldest publications leave the log now (too old, or too many)."""
    over = max(0, len(log) - retention.keep_count)
    old = 0
    for pub in log:
        if now - pub.at <= retention.keep_s:
            break
        old += 1
    return max(over, old)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value) -> bool:
    return isinstance(value, list) and len(value) <= 64 and all(
        isinstance(v, str) and len(v) <= 1024 for v in value)
