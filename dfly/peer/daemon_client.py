"""The daemon's client: how `dfly get` finds a daemon on this host and hands
it a download, so the pieces stay served after `get` exits and two `get`s of
one URL share one download. Each call has a timeout; a daemon that does not
answer at once counts as absent, and `get` works on its own.

A daemon's front port is plain HTTP unless it runs with --tls-front: a get with
TLS settings dials it plain first and, told the port speaks TLS only, with TLS."""
import http.client
import json
from typing import Optional

from dfly import errors
from dfly.client import DownloadResult
from dfly.protocol.address import loopback_for, parse_address
from dfly.protocol.handoff import HandoffRequest
from dfly.tls import TLS, http_connection

PROBE_TIMEOUT_S = 1.0
DEFAULT_ADDRESS = "127.0.0.1:65001"

_KINDS = {"BadRequest": errors.BadRequest, "SourceError": errors.SourceError,
          "SourceDenied": errors.SourceDenied,
          "DigestMismatch": errors.DigestMismatch, "DownloadTimeout": errors.DownloadTimeout,
          "LocalIOError": errors.LocalIOError, "P2PUnavailable": errors.P2PUnavailable,
          "Forbidden": errors.Forbidden, "UpstreamDown": errors.SourceError}


class DaemonClient:
    def __init__(self, address: str = DEFAULT_ADDRESS, tls: Optional[TLS] = None):
        self.address = address
        self.tls = tls
        self._secure = False   # the front answered that it speaks TLS only
        host, self.port = parse_address(address, 65001)   # ValueError: a usage error
        self.host = loopback_for(host)

    def running(self) -> bool:
        """Is a dfly daemon answering at this address (quickly)?"""
        try:
            status, body = self._call("GET", "/v1/stats", None, PROBE_TIMEOUT_S)
        except (OSError, http.client.HTTPException):
            return False
        return status == 200 and b'"peer_id"' in body

    def download(self, request: HandoffRequest, timeout_s: float) -> DownloadResult:
        """Have the daemon download `request.url` to `request.output`; typed errors as `get` raises."""
        try:
            status, body = self._call("POST", "/v1/downloads", request.to_json(), timeout_s)
        except (OSError, http.client.HTTPException) as e:
            raise errors.DflyError("the daemon at %s stopped answering: %s" % (self.address, e))
        try:
            value = json.loads(body.decode("utf-8"))
        except ValueError:
            value = {"error": body[:200].decode("latin-1")}
        if status != 200 or not isinstance(value, dict):
            kind = _KINDS.get(value.get("kind", "") if isinstance(value, dict) else "", errors.DflyError)
            raise kind("daemon: %s" % (value.get("error") if isinstance(value, dict) else status))
        fields = DownloadResult.__dataclass_fields__
        return DownloadResult(**{k: v for k, v in value.items() if k in fields})

    def _call(self, method: str, path: str, body: Optional[dict], timeout_s: float):
        status, data = self._call_once(method, path, body, timeout_s)
        if status == 400 and b'"TLSRequired"' in data and self.tls is not None and not self._secure:
            self._secure = True
            status, data = self._call_once(method, path, body, timeout_s)
        return status, data

    def _call_once(self, method: str, path: str, body: Optional[dict], timeout_s: float):
        conn = http_connection(self.tls if self._secure else None, self.host, self.port, timeout_s)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, payload, {"Content-Type": "application/json"} if payload else {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()
