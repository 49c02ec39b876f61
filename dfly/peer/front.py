"""The daemon's front door: one listener for the registry mirror, the HTTP
proxy and the daemon's own API (Dragonfly's dfdaemon port, 65001).

It extends the shared server (httpd.Handler) with what a proxy needs and the
other listeners do not: any method, CONNECT tunnels, request bodies streamed
through instead of read whole, response bodies streamed from upstream as they
arrive (chunked when their length is unknown), and HEAD replies that carry the
upstream's Content-Length. A request target that is an absolute URL (or
CONNECT) goes to `app.proxy(request, body)`; an origin-form one to `app.route`.
"""
import logging
import selectors
import socket
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from dfly.errors import BadRequest, DflyError, NotFound
from dfly.httpd import FileSlice, Handler, Request, Response, content_length, error_response, send_file_slice

log = logging.getLogger("dfly.daemon")

CHUNK = 1 << 16
TUNNEL_IDLE_S = 300.0
NO_BODY_STATUSES = (204, 304)


@dataclass
class FrontRequest(Request):
    target: str = ""   # the request target as sent: path?query, an absolute URL, or host:port


@dataclass
class Streamed:
    """A body read from `source` (read(n) -> bytes, close()): `length` bytes, or to its end."""
    source: object
    length: Optional[int]


@dataclass
class Spans:
    """A body of `length` bytes sent from files with sendfile: `spans` yields (file,
    offset, count) in order, waiting while the file grows, and has close(); a DflyError
    from it cuts the body short (the client sees a truncated transfer, never a wrong
    whole one)."""
    spans: Iterator[Tuple[object, int, int]]
    length: int


@dataclass
class Tunnel:
    """Answer 200 to a CONNECT, then copy bytes both ways between client and `upstream`."""
    upstream: socket.socket


class BodyReader:
    """The request body of a proxied request, read on demand (Content-Length bytes)."""

    def __init__(self, rfile, length: int):
        self._rfile = rfile
        self.length = length
        self._left = length

    def read(self, n: int) -> bytes:
        block = self._rfile.read(min(n, self._left)) if self._left > 0 else b""
        self._left -= len(block)
        return block

    def drain(self) -> None:
        while self._left > 0 and self.read(CHUNK):
            pass


def header_pairs(headers) -> List[Tuple[str, str]]:
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


class FrontHandler(Handler):
    timeout = 60

    def do_CONNECT(self):
        self._serve("CONNECT")

    def do_OPTIONS(self):
        self._serve("OPTIONS")

    def do_PATCH(self):
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        app = self.server.app
        body: Optional[BodyReader] = None
        try:
            proxied = method == "CONNECT" or not self.path.startswith("/")
            request = FrontRequest(method, self.path, {}, self.headers, b"", self.client_address,
                                   target=self.path)
            if proxied:
                body = self._body_reader()
                response = app.proxy(request, body)
            else:
                request.body = self._read_body()
                parts = urlsplit(self.path)
                request.path, request.query = parts.path, parse_qs(parts.query)
                response = app.route(request)
        except DflyError as e:
            response = error_response(e)
        except Exception:   # a bug must cost one request, not the daemon
            log.exception("%s %s failed", method, self.path[:200])
            response = Response.json({"error": "internal error", "kind": "InternalError"}, 500)
        if body is not None and body._left:
            self.close_connection = True   # the body was not consumed: the stream is out of step
        self._respond(method, response)

    def _body_reader(self) -> Optional[BodyReader]:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise LengthRequired("chunked request bodies are not accepted; send Content-Length")
        try:
            length = content_length(self.headers)
        except BadRequest:
            self.close_connection = True
            raise
        return None if length is None else BodyReader(self.rfile, length)

    # writing -----------------------------------------------------------------------------
    def _respond(self, method: str, response: Response) -> None:
        body = response.body
        if isinstance(body, Tunnel):
            self._tunnel(body.upstream)
            return
        source = None
        if isinstance(body, FileSlice):
            try:   # open before the status goes out, so a vanished file is a 404, not a cut body
                source = open(body.path, "rb")
            except OSError:
                response = error_response(NotFound("the data for this request is gone"))
        try:
            self._write_any(method, response, source)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True   # the client went away: its loss, not the daemon's
        finally:
            if isinstance(body, Streamed):
                body.source.close()
            if isinstance(body, Spans):
                body.spans.close()
            if source is not None:
                source.close()

    def _write_any(self, method: str, response: Response, source) -> None:
        body = response.body
        pairs = header_pairs(response.headers)
        given = {k.lower(): v for k, v in pairs}
        bodyless = method == "HEAD" or response.status in NO_BODY_STATUSES or response.status < 200
        if isinstance(body, FileSlice):
            length: Optional[int] = body.count
        elif isinstance(body, (Streamed, Spans)):
            length = body.length
        else:
            length = len(body)
        self.send_response(response.status)
        for name, value in pairs:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        chunked = False
        if bodyless:
            if "content-length" in given:   # a HEAD tells the length of what a GET would send
                self.send_header("Content-Length", given["content-length"])
            elif method == "HEAD" and length is not None and not isinstance(body, Streamed):
                self.send_header("Content-Length", str(length))
        elif length is not None:
            self.send_header("Content-Length", str(length))
        elif self.request_version == "HTTP/1.1":
            self.send_header("Transfer-Encoding", "chunked")
            chunked = True
        else:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if bodyless:
            return
        if isinstance(body, FileSlice):
            if send_file_slice(self.connection, source, body, copy=self.server.tls is not None) != body.count:
                self.close_connection = True
        elif isinstance(body, Streamed):
            self._send_stream(body, chunked)
        elif isinstance(body, Spans):
            self._send_spans(body)
        elif body:
            self.wfile.write(body)

    def _send_stream(self, body: Streamed, chunked: bool) -> None:
        sent = 0
        while body.length is None or sent < body.length:
            want = CHUNK if body.length is None else min(CHUNK, body.length - sent)
            try:
                block = body.source.read(want)
            except DflyError as e:   # upstream broke mid-body: the client must see it cut short
                log.warning("upstream body broke after %d bytes: %s", sent, e)
                self.close_connection = True
                return
            if not block:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            sent += len(block)
        if body.length is not None and sent < body.length:
            self.close_connection = True   # short: never pretend it was whole
        elif chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _send_spans(self, body: Spans) -> None:
        sent = 0
        try:
            for source, offset, count in body.spans:
                n = send_file_slice(self.connection, source, FileSlice("", offset, count),
                                    copy=self.server.tls is not None)
                sent += n
                if n != count:
                    break
        except DflyError as e:   # the download failed or did not verify: cut the body short
            log.warning("body cut after %d of %d bytes: %s", sent, body.length, e)
        if sent < body.length:
            self.close_connection = True

    def _tunnel(self, upstream: socket.socket) -> None:
        """Relay bytes both ways until both sides are done, one is idle too long, or we stop."""
        self.close_connection = True
        client = self.connection
        stopping = getattr(self.server.app, "stopping", None)
        try:
            self.send_response(200, "Connection established")
            self.end_headers()
            self.wfile.flush()
            client.settimeout(0.0)
            early = self.rfile.peek(1)   # bytes the client sent before our answer
            early = self.rfile.read(len(early)) if early else b""
            client.settimeout(None)
            upstream.settimeout(None)
            if early:
                upstream.sendall(early)
            peer_of = {client: upstream, upstream: client}
            open_ends = {client, upstream}
            with selectors.DefaultSelector() as sel:
                for s in open_ends:
                    sel.register(s, selectors.EVENT_READ)
                # Asleep until bytes come or the idle deadline: a stop shuts the client's
                # connection (Server.server_close), which wakes the select at once.
                idle_until = time.monotonic() + TUNNEL_IDLE_S
                while open_ends:
                    if stopping is not None and stopping.is_set():
                        return
                    ready = sel.select(timeout=max(0.0, idle_until - time.monotonic()))
                    if not ready:
                        if time.monotonic() >= idle_until:
                            return
                        continue
                    idle_until = time.monotonic() + TUNNEL_IDLE_S
                    for key, _ in ready:
                        src = key.fileobj
                        data = src.recv(CHUNK)
                        if data:
                            peer_of[src].sendall(data)
                        else:   # half-close: pass the FIN on, keep the other way open
                            sel.unregister(src)
                            open_ends.discard(src)
                            try:
                                peer_of[src].shutdown(socket.SHUT_WR)
                            except OSError:
                                pass
        except OSError as e:
            log.debug("tunnel ended: %s", e)
        finally:
            upstream.close()


class LengthRequired(BadRequest):
    http_status = 411


def allowed_pairs(pairs: Iterable[Tuple[str, str]], drop: Iterable[str]) -> List[Tuple[str, str]]:
    """`pairs` without the headers named in `drop` (case-insensitive)."""
    skip = {d.lower() for d in drop}
    return [(k, v) for k, v in pairs if k.lower() not in skip]
