"""The JSON messages between peers and the supernode (docs/PROTOCOL.md, v2).

Parsing is strict and total: anything a hostile or buggy client sends either
becomes a well-typed request or a BadRequest naming the field, never a crash
deeper in the supernode.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from dfly.errors import BadRequest, VersionMismatch
from dfly.protocol.digest import format_digest, parse_digest
from dfly.protocol.location import parse_location
from dfly.protocol.task import PEER_ID
from dfly.protocol.urls import normalize_url

# 2: pieces carry the digests of their blocks, and a holder may serve a piece it is
# still receiving, block by block (cut-through). A version-1 peer would take such a
# stream for a whole piece: the versions do not mix, each side refuses the other.
# 3: a block's digest is the sha256 of its piece up to the block's end (2: of the block
# alone): a version-2 peer would find every block after the first bad.
PROTOCOL_VERSION = 3
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
MAX_REPORTS = 100000
MAX_WANT = 64
MAX_URL_LEN = 8192
SUPERNODE = "supernode"   # the holder name of pieces the supernode serves itself: no peer's id
# Failure reasons that say the holder's copy may be bad, not that it was slow or
# gone: the piece came whole and did not match, or came short of its length.
DIGEST_MISMATCH = "digest mismatch"
SHORT_PIECE = "short piece"
PEER_SECRET_HEADER = "X-Dfly-Peer-Secret"   # proves a peer id: the secret its registration returned
# Cut-through: a holder serving a piece it is still receiving says so, and waits
# for each next verified block at least RELAY_WAIT_S, longer as its blocks have come
# slower (storage.relay_deadline), before it ends the body short. A failure of such
# a relay that is not a bad block is the relay's source's, not its own.
RELAY_HEADER = "X-Dfly-Relay"
RELAY_WAIT_S = 2.0   # the least a relay waits for its next block (24 blocks' time at 100 Mbit/s)
RELAY_STOPPED = "relay stopped"


def copy_suspect(reason: str) -> bool:
    """Does a `failed` report with this reason cast doubt on the holder's copy?"""
    return reason.startswith(DIGEST_MISMATCH) or reason.startswith(SHORT_PIECE)


def relay_blameless(reason: str) -> bool:
    """Is a relay's failure with this reason its source's, not its own? It ended
    its body short (its fetch failed or stalled), or had dropped the piece by the
    time we asked (404). A bad block, a stall or a refusal is its own."""
    return reason.startswith(RELAY_STOPPED) or reason.startswith("holder answered 404")
# Headers a peer may not pass to the source: they would change what the
# supernode fetches or how, not who it fetches as.
HOP_HEADERS = {"host", "content-length", "connection", "range", "if-range", "transfer-encoding",
               "if-none-match", "if-modified-since", "te", "upgrade", "keep-alive",
               "proxy-connection", "expect"}


def _str(body: dict, name: str, required: bool = False, limit: int = 1024) -> Optional[str]:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest("missing field %r" % name)
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadRequest("field %r must be a string of at most %d characters" % (name, limit))
    return value


def _int(value, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest("field %r must be an integer in %d..%d" % (name, low, high))
    return value


def _headers(value) -> Dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 64:
        raise BadRequest("field 'headers' must be an object of at most 64 headers")
    out = {}
    for k, v in value.items():
        if not isinstance(v, str) or len(k) > 256 or len(v) > 8192 or any(c in k + v for c in "\r\n\0"):
            raise BadRequest("bad header %r" % k[:64])
        if k.lower() not in HOP_HEADERS:
            out[k] = v
    return out


def _check_peer_id(peer_id: str) -> None:
    if not PEER_ID.match(peer_id) or peer_id == SUPERNODE:
        raise BadRequest("peer id must be 1-64 of [A-Za-z0-9_.-] and not %r" % SUPERNODE)


def _list(body: dict, name: str) -> list:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("field %r must be a list" % name)
    return value


def _names(value, name: str) -> List[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 64 or not all(isinstance(v, str) for v in value):
        raise BadRequest("field %r must be a list of strings" % name)
    return list(value)


@dataclass
class RegisterRequest:
    url: str
    peer_id: str
    peer_port: int
    peer_host: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)
    filters: List[str] = field(default_factory=list)
    digest: Optional[str] = None
    identifier: Optional[str] = None
    location: str = ""   # region/zone/rack (protocol/location.py); "" when not given

    @classmethod
    def parse(cls, body: dict) -> "RegisterRequest":
        if "version" in body:   # every dfly peer sends it; a hand-written call may not
            check_version(body["version"], "the peer")
        url = normalize_url(_str(body, "url", required=True, limit=MAX_URL_LEN))
        digest = _str(body, "digest")
        if digest is not None:
            try:
                digest = format_digest(*parse_digest(digest))
            except ValueError as e:
                raise BadRequest(str(e))
        peer = body.get("peer")
        if not isinstance(peer, dict):
            raise BadRequest("missing object 'peer'")
        peer_id = _str(peer, "id", required=True, limit=64)
        _check_peer_id(peer_id)
        location = _str(peer, "location", limit=200) or ""
        try:
            parse_location(location)
        except ValueError as e:
            raise BadRequest("field 'peer.location': %s" % e)
        return cls(url=url, peer_id=peer_id, peer_port=_int(peer.get("port"), "peer.port", 1, 65535),
                   peer_host=_str(peer, "host", limit=255), headers=_headers(body.get("headers")),
                   filters=_names(body.get("filters"), "filters"), digest=digest,
                   identifier=_str(body, "identifier"), location=location)

    def to_json(self) -> dict:
        return {"version": PROTOCOL_VERSION, "url": self.url, "headers": self.headers,
                "filters": self.filters, "digest": self.digest, "identifier": self.identifier,
                "peer": self._peer_json()}

    def _peer_json(self) -> dict:
        peer = {"id": self.peer_id, "host": self.peer_host, "port": self.peer_port}
        if self.location:   # optional: older supernodes never see it
            peer["location"] = self.location
        return peer


def check_version(version, who: str) -> None:
    """VersionMismatch unless `version` (a message's `version` field; None: 1, what
    a supernode older than its replies' field speaks) is ours."""
    if version is None:
        version = 1
    if version != PROTOCOL_VERSION:
        raise VersionMismatch("%s speaks dfly protocol version %s, this %s speaks version %d: "
                              "upgrade the older one" % (who, str(version)[:16],
                                                         "supernode" if who == "the peer" else "peer",
                                                         PROTOCOL_VERSION))


@dataclass(frozen=True)
class Failure:
    num: int
    holder: str
    reason: str = ""


@dataclass
class ScheduleRequest:
    peer_id: str
    done: List[int] = field(default_factory=list)
    failed: List[Failure] = field(default_factory=list)
    want: int = 4
    sequential: bool = False
    wait_s: float = 0.0
    content_version: Optional[str] = None   # of the pieces in `done`; None: unknown (older peers)
    # A download's coordinator numbers its calls (one at a time, from 1) and names the
    # last whose reply it heard: what the replies it never heard assigned is released
    # (a call that timed out is made again). 0: not numbered (the reporter, older peers).
    call: int = 0
    heard: int = 0
    # The reporter numbers its calls too (from 1), a call made again keeping its
    # number: the supernode counts a repeat's failures once. 0: not numbered.
    report_call: int = 0

    @classmethod
    def parse(cls, body: dict) -> "ScheduleRequest":
        peer_id = _str(body, "peer_id", required=True, limit=64)
        _check_peer_id(peer_id)
        done, failed = _list(body, "done"), _list(body, "failed")
        if len(done) + len(failed) > MAX_REPORTS:
            raise BadRequest("too many reports in one request")
        done = [_int(n, "done[]", 0, 1 << 40) for n in done]
        failures = []
        for item in failed:
            if not isinstance(item, dict):
                raise BadRequest("each 'failed' entry must be an object")
            failures.append(Failure(_int(item.get("num"), "failed[].num", 0, 1 << 40),
                                    _str(item, "holder", required=True, limit=64),
                                    _str(item, "reason", limit=512) or ""))
        wait = body.get("wait_s", 0)
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 60:
            raise BadRequest("field 'wait_s' must be a number of seconds in 0..60")
        sequential = body.get("sequential", False)
        if not isinstance(sequential, bool):
            raise BadRequest("field 'sequential' must be true or false")
        return cls(peer_id=peer_id, done=done, failed=failures,
                   want=_int(body.get("want", 4), "want", 0, MAX_WANT),
                   sequential=sequential, wait_s=float(wait),
                   content_version=_str(body, "content_version", limit=64),
                   call=_int(body.get("call", 0), "call", 0, 1 << 62),
                   heard=_int(body.get("heard", 0), "heard", 0, 1 << 62),
                   report_call=_int(body.get("report_call", 0), "report_call", 0, 1 << 62))

    def to_json(self) -> dict:
        out = {"peer_id": self.peer_id, "done": self.done,
               "failed": [{"num": f.num, "holder": f.holder, "reason": f.reason} for f in self.failed],
               "want": self.want, "sequential": self.sequential, "wait_s": self.wait_s}
        if self.content_version:
            out["content_version"] = self.content_version
        if self.call:
            out["call"], out["heard"] = self.call, self.heard
        if self.report_call:
            out["report_call"] = self.report_call
        return out


@dataclass(frozen=True)
class PieceCheck:
    """From a heartbeat reply: peers discarded our copy of piece `num`; check it
    against `sha256` and report it done again if good."""
    num: int
    sha256: str

    @classmethod
    def parse_all(cls, reply: dict) -> List["PieceCheck"]:
        """The reply's `check` list; entries that are not well formed are skipped
        (a check is advice: a holder that misses one checks at the next report)."""
        out = []
        items = reply.get("check") if isinstance(reply, dict) else None
        for item in items if isinstance(items, list) else ():
            if not isinstance(item, dict):
                continue
            num, sha256_hex = item.get("num"), item.get("sha256")
            if isinstance(num, int) and not isinstance(num, bool) and num >= 0 \
                    and isinstance(sha256_hex, str) and SHA256_HEX.match(sha256_hex):
                out.append(cls(num, sha256_hex))
        return out


@dataclass(frozen=True)
class HeartbeatReply:
    """What a supernode answers a seeding peer's heartbeat."""
    content_version: str = ""   # "": unknown (an older supernode)
    checks: List[PieceCheck] = field(default_factory=list)

    @classmethod
    def parse(cls, body: dict) -> "HeartbeatReply":
        return cls(content_version_of(body), PieceCheck.parse_all(body))


@dataclass(frozen=True)
class PieceOrder:
    """One piece to fetch: where it lies, its digest, who serves it, and the
    content version of the task state it came in (the version it is a piece of)."""
    num: int
    start: int
    size: int
    sha256: str
    holder: str
    addr: Optional[str] = None
    content_version: str = ""
    token: str = ""   # the piece-access token for this holder ("": an older supernode)
    block_size: int = 0   # the piece's blocks: each `block_size` bytes (the last shorter),
    blocks: tuple = ()    # with these sha256s; 0 and (): checked only whole
    relay: bool = False   # the holder is still fetching it (cut-through): see downloader.py

    @classmethod
    def parse(cls, item: dict, content_version: str = "") -> "PieceOrder":
        if not isinstance(item, dict):
            raise BadRequest("each piece must be an object")
        size = _int(item.get("size"), "size", 0, 1 << 40)
        block_size, blocks = _blocks(item, size)
        return cls(num=_int(item.get("num"), "num", 0, 1 << 40),
                   start=_int(item.get("start"), "start", 0, 1 << 62),
                   size=size,
                   sha256=_str(item, "sha256", required=True, limit=128),
                   holder=_str(item, "holder", required=True, limit=64),
                   addr=_str(item, "addr", limit=300), content_version=content_version,
                   token=_str(item, "token", limit=128) or "", block_size=block_size, blocks=blocks,
                   relay=item.get("relay") is True)

    def to_json(self) -> dict:
        """The order as a supernode sends it (tests build replies with it)."""
        out = {"num": self.num, "start": self.start, "size": self.size, "sha256": self.sha256,
               "holder": self.holder}
        if self.addr:
            out["addr"] = self.addr
        if self.token:
            out["token"] = self.token
        if self.blocks:
            out["block_size"], out["blocks"] = self.block_size, list(self.blocks)
        if self.relay:
            out["relay"] = True
        return out


def _blocks(item: dict, size: int):
    """An order's (block_size, blocks): both absent, or a size and one sha256 per block."""
    blocks = item.get("blocks")
    if blocks is None:
        return 0, ()
    block_size = _int(item.get("block_size"), "block_size", 1, 1 << 40)
    if not isinstance(blocks, list) or len(blocks) != -(-size // block_size) \
            or not all(isinstance(b, str) and SHA256_HEX.match(b) for b in blocks):
        raise BadRequest("field 'blocks' must hold one sha256 (hex) per %d bytes of the piece"
                         % block_size)
    return block_size, tuple(blocks)


@dataclass
class TaskState:
    """The supernode's view of a task, in every register and schedule reply."""
    state: str
    length: Optional[int]
    piece_size: Optional[int]
    piece_count: Optional[int]
    error: str = ""
    error_kind: str = ""
    pieces: List[PieceOrder] = field(default_factory=list)
    waited_s: Optional[float] = None   # schedule replies: time the supernode held the call on
                                       # purpose; None from a supernode that does not say
    content_version: str = ""   # which content the digests are of; "": not known yet, or a
                                # supernode older than the field
    validator: str = ""   # the source version cut: strong ETag or Last-Modified, for If-Range

    @classmethod
    def parse(cls, body: dict) -> "TaskState":
        """A supernode's reply; BadRequest naming the field when it is not one."""
        if not isinstance(body, dict):
            raise BadRequest("a task state must be an object")
        version = content_version_of(body)
        return cls(state=_str(body, "state", required=True, limit=64),
                   length=_opt_int(body.get("length"), "length"),
                   piece_size=_opt_int(body.get("piece_size"), "piece_size"),
                   piece_count=_opt_int(body.get("piece_count"), "piece_count"),
                   error=_str(body, "error", limit=MAX_URL_LEN * 4) or "",
                   error_kind=_str(body, "error_kind", limit=64) or "",
                   pieces=[PieceOrder.parse(p, version) for p in _list(body, "pieces")],
                   waited_s=_opt_seconds(body.get("waited_s")), content_version=version,
                   validator=_opt_validator(body.get("validator")))


def content_version_of(body: dict) -> str:
    """A reply's `content_version`: "" when absent or not a sane string."""
    value = body.get("content_version")
    return value if isinstance(value, str) and len(value) <= 64 else ""


def stale(held_version: Optional[str], current_version: Optional[str]) -> bool:
    """Are pieces of `held_version` not pieces of the task's `current_version`?
    Unknown ("" or None) on either side is not proof of a change. Pure."""
    return bool(held_version) and bool(current_version) and held_version != current_version


def _opt_int(value, name: str) -> Optional[int]:
    return None if value is None else _int(value, name, 0, 1 << 62)


def _opt_validator(value) -> str:
    """An If-Range value a newer supernode may add: one header line's worth, or ""."""
    if not isinstance(value, str) or len(value) > 512 or any(c in value for c in "\r\n\0"):
        return ""
    return value


def _opt_seconds(value) -> Optional[float]:
    """A duration a newer supernode may add: absent, or not a sane number, is None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e6:
        return None
    return float(value)
