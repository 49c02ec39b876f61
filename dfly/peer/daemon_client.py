"""The daemon's client: how `dfly get` finds a daemon on this host and hands
it a download, so the pieces stay served after `get` exits and two `get`s of
one URL share one download. Each call has a timeout; a daemon that does not
answer at once counts as absent, and `get` works on its own.

A daemon's front port is plain HTTP unless it runs with --tls-front: a get with
TLS settings dials it plain first and, told the port speaks TLS only, with TLS.

The hand-off needs the daemon's token (protocol/handoff.py): read from the
file the daemon wrote, so only its user (and root) can hand off. Before
sending anything, `probe` makes the daemon prove it knows the token too."""
import http.client
import json
import secrets
from typing import Optional

from dfly import errors
from dfly.client import DownloadResult
from dfly.protocol import handoff
from dfly.protocol.address import loopback_for, parse_address
from dfly.protocol.handoff import HandoffRequest
from dfly.tls import TLS, http_connection

PROBE_TIMEOUT_S = 1.0
DEFAULT_ADDRESS = "127.0.0.1:65001"

ABSENT, UNPROVEN, PROVEN = "absent", "unproven", "proven"

_KINDS = {"BadOutput": errors.LocalIOError, "Unauthorized": errors.Forbidden,
          "UnsupportedMediaType": errors.BadRequest, "BadRequest": errors.BadRequest,
          "SourceError": errors.SourceError, "SourceDenied": errors.SourceDenied,
          "DigestMismatch": errors.DigestMismatch, "DownloadTimeout": errors.DownloadTimeout,
          "LocalIOError": errors.LocalIOError, "P2PUnavailable": errors.P2PUnavailable,
          "Forbidden": errors.Forbidden, "UpstreamDown": errors.SourceError}
_SAME_WORDS = {"BadOutput", "SourceError", "SourceDenied", "DigestMismatch", "DownloadTimeout",
               "LocalIOError", "P2PUnavailable", "UpstreamDown"}


def read_token(path: str) -> Optional[str]:
    """The hand-off token in the daemon's token file; None if it cannot be read here."""
    try:
        with open(path) as f:
            return f.read(200).strip() or None
    except (OSError, UnicodeDecodeError):
        return None


class DaemonClient:
    def __init__(self, address: str = DEFAULT_ADDRESS, tls: Optional[TLS] = None,
                 token: Optional[str] = None):
        self.address = address
        self.tls = tls
        self.token = token
        self._secure = False   # the front answered that it speaks TLS only
        host, self.port = parse_address(address, 65001)   # ValueError: a usage error
        self.host = loopback_for(host)

    def running(self) -> bool:
        """Does something answer like a dfly daemon at this address (quickly)?"""
        return self.probe() != ABSENT

    def probe(self, timeout_s: float = PROBE_TIMEOUT_S) -> str:
        """ABSENT (nothing answers like a daemon), UNPROVEN (something does, but cannot show
        it knows our token: another user's daemon, or a squatter) or PROVEN."""
        challenge = secrets.token_hex(16)
        try:
            status, body, answer = self._call("GET", "/v1/stats", None, timeout_s,
                                              {handoff.CHALLENGE_HEADER: challenge})
        except (OSError, http.client.HTTPException):
            return ABSENT
        if status != 200 or b'"peer_id"' not in body:
            return ABSENT
        ok = self.token is not None and handoff.proof_valid(self.token, challenge, answer)
        return PROVEN if ok else UNPROVEN

    def download(self, request: HandoffRequest, timeout_s: float) -> DownloadResult:
        """Have the daemon download `request.url` to `request.output`; typed errors as `get` raises."""
        try:
            status, body, _ = self._call("POST", "/v1/downloads", request.to_json(), timeout_s,
                                         {"Authorization": "Bearer %s" % (self.token or "")})
        except (OSError, http.client.HTTPException) as e:
            raise errors.DflyError("the daemon at %s stopped answering: %s" % (self.address, e))
        try:
            value = json.loads(body.decode("utf-8"))
        except ValueError:
            value = {"error": body[:200].decode("latin-1")}
        if status != 200 or not isinstance(value, dict):
            name = value.get("kind", "") if isinstance(value, dict) else ""
            kind = _KINDS.get(name, errors.DflyError)
            text = value.get("error") if isinstance(value, dict) else status
            # What went wrong with the download itself reads as it does when get downloads
            # alone; the daemon's own refusals say they are the daemon's.
            raise kind(("%s" if name in _SAME_WORDS and text else "daemon: %s") % (text,))
        fields = DownloadResult.__dataclass_fields__
        return DownloadResult(**{k: v for k, v in value.items() if k in fields})

    def _call(self, method: str, path: str, body: Optional[dict], timeout_s: float,
              headers: Optional[dict] = None):
        """(status, body, the daemon's proof header) of one request."""
        status, data, proof = self._call_once(method, path, body, timeout_s, headers)
        if status == 400 and b'"TLSRequired"' in data and self.tls is not None and not self._secure:
            self._secure = True
            status, data, proof = self._call_once(method, path, body, timeout_s, headers)
        return status, data, proof

    def _call_once(self, method: str, path: str, body: Optional[dict], timeout_s: float,
                   headers: Optional[dict]):
        conn = http_connection(self.tls if self._secure else None, self.host, self.port, timeout_s)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            sent = dict(headers or {})
            if payload is not None:
                sent["Content-Type"] = "application/json"
            conn.request(method, path, payload, sent)
            response = conn.getresponse()
            return response.status, response.read(), response.getheader(handoff.PROOF_HEADER)
        finally:
            conn.close()
