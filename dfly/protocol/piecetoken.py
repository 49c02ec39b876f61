"""Piece-access tokens: who may read a task's pieces from a holder (pure: `now` is passed in).

    X-Dfly-Piece-Token: v1.<expiry, unix seconds>.<sig hex>   (with ?peer=<requester> in the URL)
    sig = HMAC-SHA256(holder's key, "dfly-piece-v1\\ntask\\nrequester\\nexpiry")

The supernode mints a token for each piece it assigns, in the schedule reply,
bound to the task, the requester and an expiry a few minutes ahead. The key is
the holder's own: for a peer, the per-peer secret the supernode gave it at
registration (so the holder checks a token with a secret it already has: no
cluster key, no extra round trip, and a holder registered at several supernodes
tries the secret of each); for the supernode's own pieces, a random key of the
supernode process. A token therefore opens one task's pieces at one holder for
one requester until its expiry, and nothing else. Without TLS it stops
strangers who only know a task id, not someone who reads the schedule reply on
the wire (docs/SECURITY.md).
"""
import hashlib
import hmac
import re
from typing import Iterable, Optional

HEADER = "X-Dfly-Piece-Token"
TTL_S = 300        # a token outlives the assignment it came with (60 s) and a retry or two
SKEW_S = 30.0      # holder and supernode clocks may differ this much (members need NTP too)
_FORMAT = re.compile(r"v1\.([0-9]{1,12})\.([0-9a-f]{64})\Z")


def _sig(key: bytes, task_id: str, requester: str, expiry: int) -> str:
    message = "\n".join(["dfly-piece-v1", task_id, requester, str(expiry)])
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def mint(key: bytes, task_id: str, requester: str, now: float, ttl_s: float = TTL_S) -> str:
    """A token letting `requester` read `task_id`'s pieces from the holder of `key`."""
    expiry = int(now + ttl_s)
    return "v1.%d.%s" % (expiry, _sig(key, task_id, requester, expiry))


def refusal(token: Optional[str], keys: Iterable[bytes], task_id: str, requester: str,
            now: float) -> Optional[str]:
    """Why `token` does not let `requester` read `task_id` here (None: it does).
    `keys`: every key a token for this holder may be minted with."""
    if not token:
        return "no piece token (ask the supernode for a schedule)"
    match = _FORMAT.match(token)
    if match is None:
        return "malformed piece token"
    expiry, sig = int(match.group(1)), match.group(2)
    if now > expiry + SKEW_S:
        return "piece token expired"
    if not requester:
        return "piece token without the requester's id (?peer=)"
    if not any(hmac.compare_digest(sig, _sig(k, task_id, requester, expiry)) for k in keys if k):
        return "piece token not valid for this task, requester and holder"
    return None


def key_of(secret: str) -> bytes:
    """The key a peer's tokens are minted with: its per-peer secret."""
    return secret.encode()
