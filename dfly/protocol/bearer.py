"""The registry token protocol, as values: read a `WWW-Authenticate: Bearer`
challenge, build the token request, read the token service's answer. Pure.

    WWW-Authenticate: Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull"
    GET <realm>?service=<service>&scope=<scope>   (with the client's Basic credentials)
    200 {"token": "...", "access_token": "...", "expires_in": 300}
"""
import json
import math
import re
from typing import Dict, NamedTuple, Optional
from urllib.parse import urlencode, urlsplit

DEFAULT_EXPIRES_IN_S = 60          # the protocol's default when the answer names none
MAX_TOKEN_BYTES = 64 * 1024

_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')


class Challenge(NamedTuple):
    realm: str
    service: str = ""
    scope: str = ""


def parse_challenge(header: str) -> Optional[Challenge]:
    """The Bearer challenge in a WWW-Authenticate value; None when there is none
    or its realm is not an absolute http(s) URL."""
    start = re.search(r"(?:^|,)\s*Bearer\s+", header or "", re.I)
    if not start:
        return None
    params: Dict[str, str] = {}
    pos = start.end()
    while pos < len(header):
        m = _PARAM.match(header, pos)
        if not m:
            break
        name = m.group(1).lower()
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params.setdefault(name, re.sub(r"\\(.)", r"\1", value))
        pos = m.end()
    realm = params.get("realm", "")
    try:
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
    except ValueError:   # "http://[::1/t": not a URL at all
        return None
    return Challenge(realm, params.get("service", ""), params.get("scope", ""))


def token_target(challenge: Challenge) -> str:
    """The path and query of the token request for `challenge` (its realm's own query kept)."""
    parts = urlsplit(challenge.realm)
    query = [(k, v) for k, v in (("service", challenge.service), ("scope", challenge.scope)) if v]
    extra = urlencode(query)
    joined = "&".join(q for q in (parts.query, extra) if q)
    return (parts.path or "/") + ("?" + joined if joined else "")


def parse_token_reply(body: bytes) -> Optional[tuple]:
    """(token, expires_in_s) from the token service's JSON; None when it holds no token."""
    if len(body) > MAX_TOKEN_BYTES:
        return None
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    token = value.get("token") or value.get("access_token")
    if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
        return None
    expires = value.get("expires_in")
    if (isinstance(expires, bool) or not isinstance(expires, (int, float)) or expires <= 0
            or not math.isfinite(expires)):   # json.loads takes NaN and Infinity
        expires = DEFAULT_EXPIRES_IN_S
    return token, float(expires)
