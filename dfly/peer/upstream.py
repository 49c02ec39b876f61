"""Outbound HTTP for the daemon: one request to an upstream (the registry, or
the server a proxied request names), answered as it came.

Nothing is interpreted here: no redirect is followed, no status turned into an
exception, so what the upstream said reaches the client faithfully. Hop-by-hop
headers (RFC 9110 section 7.6.1) are dropped in both directions. A connection
that cannot be made or breaks before the status line raises UpstreamDown.
"""
import http.client
import socket
import ssl
from typing import Iterable, List, Optional, Tuple

from dfly import __version__
from dfly.errors import DflyError, unreachable
from dfly.protocol.address import format_address, format_host

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "transfer-encoding", "upgrade", "proxy-connection"}


class UpstreamDown(DflyError):
    """The upstream could not be reached or broke before answering. `unreachable`: no
    connection could be made at all (refused, timed out, no route, name unknown), as
    against one that broke or answered garbage (outage mode trusts only the former)."""
    http_status = 502

    def __init__(self, message: str = "", unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def end_to_end(headers: Iterable[Tuple[str, str]], drop: Iterable[str] = ()) -> List[Tuple[str, str]]:
    """`headers` without the hop-by-hop ones, those named in Connection, and `drop`."""
    pairs = list(headers)
    named = {n.strip().lower() for k, v in pairs if k.lower() == "connection" for n in v.split(",")}
    skip = HOP_BY_HOP | named | {d.lower() for d in drop}
    return [(k, v) for k, v in pairs if k.lower() not in skip]


class UpstreamResponse:
    """A status, end-to-end headers and a body to read; close() when done."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse):
        self._conn = conn
        self._response = response
        self.status = response.status
        self.reason = response.reason
        self.headers = end_to_end(response.getheaders())
        self.length: Optional[int] = response.length   # None: chunked or until close

    def header(self, name: str, default: str = "") -> str:
        return self._response.getheader(name, default) or default

    def read(self, n: int) -> bytes:
        try:
            return self._response.read(n)
        except (http.client.HTTPException, OSError) as e:
            raise UpstreamDown("upstream transfer broke: %s" % e)

    def read_all(self, limit: int) -> bytes:
        data = self.read(limit + 1)
        if len(data) > limit:
            raise UpstreamDown("upstream reply over %d bytes" % limit)
        return data

    def close(self) -> None:
        self._response.close()
        self._conn.close()

    def __enter__(self) -> "UpstreamResponse":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Upstream:
    """Opens requests with a timeout on every connect and read."""

    def __init__(self, timeout_s: float, insecure: bool = False):
        self.timeout_s = timeout_s
        self._tls = ssl.create_default_context()
        if insecure:
            self._tls.check_hostname = False
            self._tls.verify_mode = ssl.CERT_NONE

    def open(self, method: str, scheme: str, host: str, port: int, target: str,
             headers: Iterable[Tuple[str, str]] = (), body=None,
             body_length: Optional[int] = None) -> UpstreamResponse:
        """Send one request; `body` is bytes or a file-like object of `body_length` bytes."""
        if scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=self.timeout_s, context=self._tls)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout_s)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            sent = set()
            for name, value in end_to_end(headers, drop=("host", "content-length")):
                conn.putheader(name, value)
                sent.add(name.lower())
            conn.putheader("Host", _host_header(host, port, scheme))
            if "user-agent" not in sent:
                conn.putheader("User-Agent", "dfly/" + __version__)
            if body is not None:
                conn.putheader("Content-Length", str(body_length if body_length is not None
                                                     else len(body)))
            conn.endheaders()
            if body is not None:
                _send_body(conn, body, body_length)
            response = conn.getresponse()
        except UpstreamDown:
            conn.close()
            raise
        except (http.client.HTTPException, OSError, ValueError) as e:
            conn.close()
            reason = "timed out" if isinstance(e, socket.timeout) else str(e) or type(e).__name__
            raise UpstreamDown("upstream %s unreachable: %s" % (format_address(host, port), reason),
                               unreachable=unreachable(e))
        return UpstreamResponse(conn, response)


def _send_body(conn: http.client.HTTPConnection, body, length: Optional[int]) -> None:
    if isinstance(body, (bytes, bytearray)):
        conn.send(body)
        return
    left = length or 0
    while left > 0:
        block = body.read(min(left, 1 << 16))
        if not block:
            raise UpstreamDown("client sent %d bytes fewer than its Content-Length" % left)
        conn.send(block)
        left -= len(block)


def _host_header(host: str, port: int, scheme: str) -> str:
    default = 443 if scheme == "https" else 80
    return format_host(host) if port == default else format_address(host, port)
