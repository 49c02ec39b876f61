"""Which credentials the registry let read which blob, recently: what the daemon's
registry mirror may go on trusting while the registry cannot be reached. Pure.

Normally no cached blob is served on trust: the registry is asked each time
(peer/registry.py). When it cannot be reached at all (refused, timed out, no
route), a client is served a blob only if the registry, within the last
`ttl_s`, said yes to the same credentials for the same blob in the same
repository. Credentials are never kept: the key is an HMAC of (repository,
digest, Authorization) under a key made at start, so the table tells nothing
even to one who reads the process's memory, and an unknown client (other
credentials, none where some were needed, another repository) matches nothing.
The table is bounded: the oldest grants go first, expired ones on the way.
"""
import hashlib
import hmac
import secrets
from collections import OrderedDict


class Grants:
    def __init__(self, ttl_s: float = 3600.0, max_entries: int = 65536, key: bytes = b""):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._key = key or secrets.token_bytes(32)
        self._granted = OrderedDict()   # entry -> when granted, oldest first

    def _entry(self, repository: str, digest: str, authorization: str) -> bytes:
        text = "\n".join([repository, digest, authorization]).encode("utf-8", "surrogateescape")
        return hmac.new(self._key, text, hashlib.sha256).digest()

    def granted(self, repository: str, digest: str, authorization: str, now: float) -> None:
        """The registry let these credentials read this blob, at `now`."""
        if self.ttl_s <= 0 or self.max_entries <= 0:
            return
        entry = self._entry(repository, digest, authorization)
        self._granted.pop(entry, None)
        self._granted[entry] = now
        while len(self._granted) > self.max_entries:
            self._granted.popitem(last=False)
        self._expire(now)

    def allowed(self, repository: str, digest: str, authorization: str, now: float) -> bool:
        """Were these credentials let read this blob within the last ttl_s?"""
        self._expire(now)
        when = self._granted.get(self._entry(repository, digest, authorization))
        return when is not None and now - when <= self.ttl_s

    def _expire(self, now: float) -> None:
        while self._granted:
            entry, when = next(iter(self._granted.items()))
            if now - when <= self.ttl_s:
                break
            del self._granted[entry]

    def __len__(self) -> int:
        return len(self._granted)
