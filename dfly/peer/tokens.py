"""Bearer tokens for a registry, fetched on a client's behalf.

When a client sends the mirror HTTP Basic credentials and the upstream answers
with a Bearer challenge, the daemon asks the challenge's realm for a token with
those credentials and the scope the registry named (so the token grants what
this client may do in this repository, no more), then retries with it. The P2P
task then carries the short-lived token, never the client's password. Tokens
are cached per (credentials, realm, service, scope) until shortly before they
expire. Credentials go to an http realm only when the registry itself is
plain http.
"""
import hashlib
import logging
import threading
import time
from typing import Callable, Dict, Optional, Tuple
from urllib.parse import urlsplit

from dfly.peer.upstream import Upstream, UpstreamDown
from dfly.protocol.bearer import Challenge, parse_token_reply, token_target

log = logging.getLogger("dfly.daemon")

EXPIRY_MARGIN = 0.9    # use a token for this share of its lifetime
MAX_CACHED = 1024


class BearerTokens:
    def __init__(self, upstream: Upstream, allow_http_realm: bool,
                 clock: Callable[[], float] = time.monotonic):
        self.upstream = upstream
        self.allow_http_realm = allow_http_realm
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: Dict[Tuple[str, str, str, str], Tuple[str, float]] = {}

    def token(self, challenge: Challenge, basic_authorization: str) -> Optional[str]:
        """A token for `challenge`, asked for with `basic_authorization` (the client's
        "Basic ..." header value); None when the realm refuses or cannot be reached."""
        parts = urlsplit(challenge.realm)
        if parts.scheme != "https" and not self.allow_http_realm:
            log.warning("not sending credentials to the plain-http token realm %s", challenge.realm[:200])
            return None
        who = hashlib.sha256(basic_authorization.encode("utf-8", "replace")).hexdigest()
        key = (who, challenge.realm, challenge.service, challenge.scope)
        now = self.clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[1] > now:
                return cached[0]
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with self.upstream.open("GET", parts.scheme, parts.hostname, port, token_target(challenge),
                                    [("Authorization", basic_authorization),
                                     ("Accept", "application/json")]) as reply:
                body = reply.read_all(64 * 1024) if reply.status == 200 else b""
                status = reply.status
        except UpstreamDown as e:
            log.warning("token realm %s unreachable: %s", challenge.realm[:200], e)
            return None
        answer = parse_token_reply(body) if status == 200 else None
        if answer is None:
            log.info("token realm %s gave no token (%d)", challenge.realm[:200], status)
            return None
        token, expires_in_s = answer
        with self._lock:
            if len(self._cache) >= MAX_CACHED:
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
            self._cache[key] = (token, now + expires_in_s * EXPIRY_MARGIN)
        return token
