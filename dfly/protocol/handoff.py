"""`dfly get` handing its download to the daemon on the same host (docs/PROTOCOL.md).

    POST /v1/downloads  {"url": ..., "output": "/abs/path", "digest": "sha256:..." | null,
                         "headers": {...}, "filters": [...], "identifier": null,
                         "timeout_s": 10.0 | null}
      Authorization: Bearer <token>; Content-Type: application/json
    200 -> the DownloadResult as JSON; errors as {"error", "kind"} with the kind's status.

The daemon writes where this names, as its own user, so the request must prove
it comes from that user: the token is a random secret the daemon writes at
start to DATA_DIR/daemon/handoff.token, a file only its user (and root) can
read. Whoever can read it could write where the daemon writes anyway. On top
of the token, what a browser or a proxy would send is refused (an Origin or
Sec-Fetch-* header, a body that is not JSON, a Via/Forwarded header, a Host
that is not a loopback name: DNS rebinding), so a web page cannot use the
daemon even if it learnt the token. `get` checks the daemon too before it
sends anything: its probe carries a challenge the daemon answers with
HMAC(token, challenge), so a process squatting the port learns nothing.
Parsing is strict: only an absolute output path is accepted.
"""
import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from dfly.errors import BadRequest, Forbidden
from dfly.protocol.digest import parse_digest
from dfly.protocol.messages import MAX_URL_LEN, _headers, _names, _str
from dfly.protocol.urls import normalize_url

TOKEN_FILE = os.path.join("daemon", "handoff.token")   # under the daemon's data dir
CHALLENGE_HEADER = "X-Dfly-Challenge"
PROOF_HEADER = "X-Dfly-Proof"
MAX_CHALLENGE_LEN = 128
BROWSER_HEADERS = ("origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest")
FORWARDING_HEADERS = ("via", "forwarded", "x-forwarded-for", "x-forwarded-host")


class UnsupportedMediaType(BadRequest):
    http_status = 415


class Unauthorized(Forbidden):
    http_status = 401


@dataclass
class HandoffRequest:
    url: str
    output: str
    digest: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)
    filters: List[str] = field(default_factory=list)
    identifier: Optional[str] = None
    timeout_s: Optional[float] = None   # get's --timeout: past it, nothing is written to output

    @classmethod
    def parse(cls, body: dict) -> "HandoffRequest":
        url = normalize_url(_str(body, "url", required=True, limit=MAX_URL_LEN))
        output = _str(body, "output", required=True, limit=4096)
        if not os.path.isabs(output) or "\0" in output:
            raise BadRequest("output must be an absolute path")
        digest = _str(body, "digest")
        if digest is not None:
            try:
                parse_digest(digest)
            except ValueError as e:
                raise BadRequest(str(e))
        return cls(url, os.path.normpath(output), digest.lower() if digest else None,
                   _headers(body.get("headers")), _names(body.get("filters"), "filters"),
                   _str(body, "identifier"), _timeout(body.get("timeout_s")))

    def to_json(self) -> dict:
        return {"url": self.url, "output": self.output, "digest": self.digest,
                "headers": self.headers, "filters": self.filters, "identifier": self.identifier,
                "timeout_s": self.timeout_s}


def _timeout(value) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e9:
        raise BadRequest("timeout_s must be a positive number of seconds")
    return float(value)


def check_handoff(headers, token: str) -> None:
    """Raise unless `headers` (a message, a dict or (name, value) pairs) are those of `dfly get`
    on this host holding `token`: see the module's paragraph for each rule."""
    fields = _lowered(headers)
    if any(fields.get(name) for name in BROWSER_HEADERS):
        raise Forbidden("hand-off refused: browser requests (Origin, Sec-Fetch-*) are not accepted")
    if any(fields.get(name) for name in FORWARDING_HEADERS):
        raise Forbidden("hand-off refused: the request came through a proxy")
    hosts = fields.get("host", [])
    if len(hosts) != 1 or not loopback_host(hosts[0]):
        raise Forbidden("hand-off refused: Host must name this host's loopback address")
    media = (fields.get("content-type") or [""])[0].split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType("hand-off needs Content-Type: application/json")
    given = (fields.get("authorization") or [""])[0]
    scheme, _, value = given.partition(" ")
    if not token or scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token.encode()):
        raise Unauthorized("hand-off refused: missing or wrong token (%s)" % TOKEN_FILE)


def proof(token: str, challenge: str) -> str:
    """What the daemon answers to `get`'s challenge: it knows the token, without showing it."""
    return hmac.new(token.encode(), b"dfly-daemon|" + challenge.encode(), hashlib.sha256).hexdigest()


def proof_valid(token: str, challenge: str, answer: Optional[str]) -> bool:
    return bool(answer) and hmac.compare_digest(proof(token, challenge).encode(),
                                                (answer or "").encode("latin-1", "replace"))


def loopback_host(host: str) -> bool:
    """Is a Host header value `localhost` or a loopback address, with or without a port?"""
    host = host.strip().lower()
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _lowered(headers) -> Dict[str, List[str]]:
    pairs = headers.items() if hasattr(headers, "items") else headers
    out: Dict[str, List[str]] = {}
    for name, value in pairs:
        out.setdefault(name.lower(), []).append(value)
    return out
