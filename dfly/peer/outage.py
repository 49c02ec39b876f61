"""Outage mode for the registry mirror: what the daemon still answers while the
registry cannot be reached at all (refused, timed out, no route), and to whom.

While the registry answers, every yes it gives is remembered: which
credentials (a keyed hash of the client's Authorization, protocol/grants.py)
may read which blob or manifest in which repository, for --outage-access-ttl;
and the manifests themselves (by repository, reference and Accept: what the
registry sent, a digest reference checked against its bytes), up to
MAX_MANIFEST_BYTES in all, least recently used dropped first. The answer of
the API base (`/v2/`, the client's auth probe) without credentials is
remembered too: its challenge tells a client which credentials to send.

During an outage: a blob or manifest goes to a client whose very credentials
were granted it within the window, to no one else; the base is answered with
the remembered challenge (without credentials) or a plain 200 (with some: a
ping, no content). So a pull by a client that pulled the same image within the
window (same Basic credentials, same still-held token, or none) works; an
unknown client gets the 502 of the outage. Everything is in memory: a restart
forgets it. One lock guards it all (request threads share it).
"""
import hashlib
import threading
import time
from collections import OrderedDict
from typing import Callable, List, NamedTuple, Optional, Tuple

from dfly.protocol import oci
from dfly.protocol.grants import Grants

MAX_MANIFEST_BYTES = 32 << 20   # all remembered manifests together
MAX_ONE_MANIFEST = 4 << 20      # larger ones pass through, not remembered
MAX_MANIFESTS = 4096
API_HEADERS = [("Content-Type", "application/json"),
               ("Docker-Distribution-API-Version", "registry/2.0")]


class Remembered(NamedTuple):
    status: int
    headers: List[Tuple[str, str]]
    body: bytes


class OutageMemory:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic,
                 max_bytes: int = MAX_MANIFEST_BYTES):
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_bytes = max_bytes
        self._grants = Grants(ttl_s)
        self._manifests = OrderedDict()   # (name, reference, Accept) -> Remembered, oldest first
        self._bytes = 0
        self._base: Optional[Remembered] = None
        self._lock = threading.Lock()

    @property
    def on(self) -> bool:
        return self.ttl_s > 0

    # while the registry answers -------------------------------------------------------
    def blob_granted(self, name: str, digest: str, authorization: str) -> None:
        with self._lock:
            self._grants.granted(name, digest, authorization, self.clock())

    def manifest_answered(self, name: str, reference: str, accept: str, authorization: str,
                          headers: List[Tuple[str, str]], body: bytes) -> None:
        """The registry sent this manifest (200) to these credentials."""
        if not self.on or len(body) > MAX_ONE_MANIFEST or not _matches(reference, body):
            return
        key = (name, reference, accept)
        kept = Remembered(200, list(headers), body)
        with self._lock:
            self._grants.granted(name, "manifest " + reference, authorization, self.clock())
            old = self._manifests.pop(key, None)
            self._bytes -= len(old.body) if old is not None else 0
            self._manifests[key] = kept
            self._bytes += len(body)
            while self._manifests and (self._bytes > self.max_bytes
                                       or len(self._manifests) > MAX_MANIFESTS):
                _, dropped = self._manifests.popitem(last=False)
                self._bytes -= len(dropped.body)

    def base_answered(self, status: int, headers: List[Tuple[str, str]], body: bytes) -> None:
        """What `/v2/` answers a client without credentials (its challenge)."""
        if self.on and len(body) <= 64 << 10:
            with self._lock:
                self._base = Remembered(status, list(headers), body)

    # during an outage -----------------------------------------------------------------
    def blob_allowed(self, name: str, digest: str, authorization: str) -> bool:
        with self._lock:
            return self._grants.allowed(name, digest, authorization, self.clock())

    def manifest(self, name: str, reference: str, accept: str,
                 authorization: str) -> Optional[Remembered]:
        with self._lock:
            if not self._grants.allowed(name, "manifest " + reference, authorization, self.clock()):
                return None
            kept = self._manifests.get((name, reference, accept))
            if kept is not None:
                self._manifests.move_to_end((name, reference, accept))
            return kept

    def base(self, authorization: str) -> Optional[Remembered]:
        if not self.on:
            return None
        if authorization:
            return Remembered(200, API_HEADERS, b"{}")
        with self._lock:
            return self._base


def _matches(reference: str, body: bytes) -> bool:
    """A manifest fetched by digest must be those bytes (a tag names whatever was sent)."""
    if not oci.DIGEST.match(reference):
        return True
    algorithm, _, hexdigest = reference.partition(":")
    return hashlib.new(algorithm, body).hexdigest() == hexdigest
