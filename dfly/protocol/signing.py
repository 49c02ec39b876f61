"""Requests between supernodes of a cluster, signed one by one (pure: `now` is passed in).

    X-Dfly-Cluster: v1 member=<host:port> ts=<unix seconds> nonce=<hex> sig=<hex>
    sig = HMAC-SHA256(key, "method\\npath\\nsha256(body) hex\\nts\\nnonce\\nmember")

The key is derived from the shared --cluster-secret and the member list
(`cluster_key`), so a member of another cluster (another secret, other members)
is refused, and the secret itself never crosses the wire. A signature binds the
request's method, path and body, so a sniffed one cannot be reused for another
call; its timestamp must be within WINDOW_S of the receiver's clock, and its
nonce is remembered for as long as the timestamp is acceptable, so it cannot be
replayed either. Replies are not signed: on a network where an attacker sits
in the path, TLS (dfly/tls.py) is the answer, for peers as well.
"""
import hashlib
import hmac
import re
import threading
from typing import Dict, Iterable, NamedTuple, Optional

from dfly.errors import Forbidden

HEADER = "X-Dfly-Cluster"
WINDOW_S = 30.0
MAX_NONCES = 200000   # about 3000 signed requests a second for the window
_FORMAT = re.compile(r"v1 member=(\S{1,300}) ts=([0-9]{1,12}(?:\.[0-9]{1,6})?) "
                     r"nonce=([0-9a-f]{16,64}) sig=([0-9a-f]{64})\Z")


class SignedCall(NamedTuple):
    """What a signature covers, as the receiver saw it."""
    header: Optional[str]
    method: str
    path: str
    body: bytes


def cluster_key(secret: str, members: Iterable[str]) -> bytes:
    """The signing key: binds the shared secret to the member list."""
    message = ",".join(sorted(members)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def signature(key: bytes, method: str, path: str, body: bytes, ts: str, nonce: str,
              member: str) -> str:
    message = "\n".join([method.upper(), path, hashlib.sha256(body).hexdigest(), ts, nonce, member])
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def sign(key: bytes, member: str, method: str, path: str, body: bytes, now: float,
         nonce: str) -> str:
    """The header value for one request from `member` (a fresh random `nonce` each time)."""
    ts = "%.3f" % now
    return "v1 member=%s ts=%s nonce=%s sig=%s" % (
        member, ts, nonce, signature(key, method, path, body, ts, nonce, member))


class Verifier:
    """Checks signed requests; remembers the nonces it accepted while they could be replayed."""

    def __init__(self, key: bytes, members: Iterable[str], window_s: float = WINDOW_S,
                 max_nonces: int = MAX_NONCES):
        self.keys = [key]   # a signature under any of these is taken (a key roll)
        self.members = set(members)
        self.window_s = window_s
        self.max_nonces = max_nonces
        self._seen: Dict[str, float] = {}   # nonce -> when it can be forgotten
        self._next_prune = 0.0
        self._lock = threading.Lock()   # handler threads verify at once

    def verify(self, header: Optional[str], method: str, path: str, body: bytes, now: float) -> str:
        """The signing member's address, or Forbidden (the reason is for the log, not a guide)."""
        found = _FORMAT.match(header or "")
        if not found:
            raise Forbidden("not a member of this supernode cluster (no valid signature)")
        member, ts, nonce, sig = found.groups()
        signed = any(hmac.compare_digest(signature(key, method, path, body, ts, nonce, member), sig)
                     for key in self.keys)
        if not signed or member not in self.members:
            raise Forbidden("not a member of this supernode cluster (bad signature)")
        if abs(now - float(ts)) > self.window_s:
            raise Forbidden("cluster request signed %.0fs away from this member's clock "
                            "(more than %.0fs: clocks out of step, or a replay)"
                            % (now - float(ts), self.window_s))
        with self._lock:
            self._forget(now)
            if nonce in self._seen:
                raise Forbidden("cluster request replayed (nonce already used)")
            if len(self._seen) >= self.max_nonces:
                raise Forbidden("too many cluster requests in the replay window")
            self._seen[nonce] = float(ts) + self.window_s
        return member

    def _forget(self, now: float) -> None:
        """Drop nonces whose timestamp is too old to be accepted anyway (callers hold the lock)."""
        if now < self._next_prune and len(self._seen) < self.max_nonces:
            return
        self._seen = {n: t for n, t in self._seen.items() if t >= now}
        self._next_prune = now + self.window_s / 2
