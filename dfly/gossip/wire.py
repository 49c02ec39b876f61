"""The gossip packet: authenticated, fresh, never replayed (pure: `now` is passed in).

    b"DG1" | key id (4) | time ms (8) | sequence (8) | JSON body | HMAC-SHA256 tag (32)

The tag covers everything before it, under a cluster key. A key ring allows
rotation without downtime: the first key signs, every key verifies (roll a new
key in as second everywhere, then first, then drop the old one). The key id
(the first 4 bytes of the key's SHA-256) picks the key without trying each.
A packet older or newer than `max_skew_s` is stale; a sequence number a sender
already used (within a window of the last 1024) is a replay. A sender's
sequence starts at its wall clock in microseconds, so a restarted member is
not taken for a replayer. Authenticated, not secret: the standard library has
no symmetric cipher (TCP push-pull uses TLS when TLS is configured).
"""
import hashlib
import hmac
import json
import struct
from typing import Dict, List, Optional, Tuple

MAGIC = b"DG1"
HEADER = struct.Struct(">4sQQ")
TAG_BYTES = 32
MAX_PACKET_BYTES = 1 << 20          # TCP push-pull of a big cluster; UDP packets stay < 1400
REPLAY_WINDOW = 1024
MAX_SENDERS = 4096


class Dropped(Exception):
    """A packet not taken; `reason` is a counter name."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:4]


class Keyring:
    def __init__(self, keys: List[bytes]):
        if not keys or any(len(k) < 16 for k in keys):
            raise ValueError("a gossip key must be at least 16 bytes")
        self.primary = keys[0]
        self.keys = list(keys)   # the first signs; every one verifies
        self._by_id = {key_id(k): k for k in keys}

    def key(self, kid: bytes) -> Optional[bytes]:
        return self._by_id.get(kid)


class Sealer:
    """Signs outgoing packets."""

    def __init__(self, keyring: Keyring, now_wall_s: float):
        self.keyring = keyring
        self._seq = int(now_wall_s * 1e6)

    def seal(self, msg: Dict, now_wall_s: float) -> bytes:
        self._seq = max(self._seq + 1, int(now_wall_s * 1e6))
        body = json.dumps(msg, separators=(",", ":")).encode()
        head = MAGIC + HEADER.pack(key_id(self.keyring.primary), int(now_wall_s * 1000), self._seq)
        return head + body + hmac.new(self.keyring.primary, head + body, hashlib.sha256).digest()


class Opener:
    """Checks incoming packets; `dropped` counts what was refused and why."""

    def __init__(self, keyring: Keyring, max_skew_s: float = 30.0):
        self.keyring = keyring
        self.max_skew_s = max_skew_s
        self.dropped: Dict[str, int] = {}
        self._seen: Dict[str, Tuple[int, set]] = {}   # sender -> (highest seq, seqs in window)

    def open(self, packet: bytes, now_wall_s: float) -> Dict:
        try:
            return self._open(packet, now_wall_s)
        except Dropped as e:
            self.dropped[e.reason] = self.dropped.get(e.reason, 0) + 1
            raise

    def _open(self, packet: bytes, now_wall_s: float) -> Dict:
        size = len(MAGIC) + HEADER.size + TAG_BYTES
        if len(packet) < size + 2 or len(packet) > MAX_PACKET_BYTES:
            raise Dropped("malformed")
        if packet[:3] != MAGIC:
            raise Dropped("malformed")
        kid, sent_ms, seq = HEADER.unpack_from(packet, 3)
        key = self.keyring.key(kid)
        if key is None:
            raise Dropped("unknown_key")
        signed, tag = packet[:-TAG_BYTES], packet[-TAG_BYTES:]
        if not hmac.compare_digest(tag, hmac.new(key, signed, hashlib.sha256).digest()):
            raise Dropped("forged")
        if abs(sent_ms / 1000.0 - now_wall_s) > self.max_skew_s:
            raise Dropped("stale")
        try:
            msg = json.loads(signed[size - TAG_BYTES:].decode())
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise Dropped("malformed") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("from"), str):
            raise Dropped("malformed")
        self._check_fresh(msg["from"], seq)
        return msg

    def _check_fresh(self, sender: str, seq: int) -> None:
        highest, window = self._seen.get(sender, (0, set()))
        if seq <= highest - REPLAY_WINDOW or seq in window:
            raise Dropped("replayed")
        window.add(seq)
        if seq > highest:
            highest = seq
            window = {s for s in window if s > highest - REPLAY_WINDOW}
        self._seen.pop(sender, None)   # re-inserted last: the dict's order is recency
        self._seen[sender] = (highest, window)
        while len(self._seen) > MAX_SENDERS:
            del self._seen[next(iter(self._seen))]
