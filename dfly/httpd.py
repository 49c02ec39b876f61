"""The one HTTP server every dfly listener is built on (supernode, uploader).

The socket's family follows the address it is given (IPv4, IPv6, or the
first the resolver names for a host name); `::` is every address of both
families (IPV6_V6ONLY off), and IPv4 clients seen through it are reported by
their plain IPv4 address. An address the host cannot listen on is one
CannotListen, never a traceback.

A listener is an `app` with a `route(Request) -> Response` method; this module
does the socket side only: bounded request bodies, a per-connection socket
timeout, a whole-request deadline for the request's head and body (a client
trickling header lines cannot pin a thread forever), a cap on connections
served at once and on those of one client host, typed errors mapped to
statuses here and nowhere else (as JSON, also for requests that are not HTTP),
and file bodies sent with socket.sendfile so piece data never passes through Python.

With a `tls` (dfly/tls.py) every connection is TLS: the handshake is done in the
connection's thread, not the accept loop, and file bodies are read and sent
(sendfile cannot encrypt). Connections are kept alive either way, so a peer
fetching many pieces pays for one handshake, not one per piece.
"""
import errno
import io
import json
import logging
import os
import re
import selectors
import socket
import socketserver
import statistics
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple, Union
from urllib.parse import parse_qs, urlsplit

try:   # SIOCOUTQ: what a socket's peer has not acknowledged (Unix)
    import fcntl
    import termios
    _OUTQ: Optional[int] = getattr(termios, "TIOCOUTQ", None)
except ImportError:   # pragma: no cover (not Unix)
    _OUTQ = None

from dfly import __version__
from dfly.errors import BadRequest, CannotListen, DflyError, NotFound
from dfly.options import option
from dfly.protocol.address import CLIENT_IPV6_PREFIX, client_key, format_address, is_ipv6, plain_ip

log = logging.getLogger("dfly.httpd")

MAX_BODY_BYTES = 1 << 20
REQUEST_DEADLINE_S = 60.0   # from a request's first byte until its head and body are read
MAX_CONNECTIONS_PER_CLIENT = 128


def client_ipv6_prefix_option():
    """The config field of every program whose listeners limit each client."""
    return option(CLIENT_IPV6_PREFIX, "the per-client limits count an IPv6 client by this prefix "
                  "of its address: 128 = each address apart (hosts of a cluster often share one "
                  "/64); 64 where each client host owns a /64 and could rotate addresses")


class _DeadlineReads(socket.SocketIO):
    """A connection's reads. While armed (a request's head, or its small body, is
    being read) each read may wait only what is left until the request's deadline,
    counted from the request's first byte; otherwise reads are left alone (a
    proxied upload or a CONNECT tunnel streams as long as it streams)."""

    def __init__(self, sock: socket.socket, deadline_s: float, timeout_s: float):
        super().__init__(sock, "rb")
        self.deadline_s, self.timeout_s = deadline_s, timeout_s
        self.deadline: Optional[float] = None
        self.armed = False

    def arm(self) -> None:
        """A new request: its deadline starts with its first byte."""
        self.deadline, self.armed = None, True

    def resume(self) -> None:
        self.armed = True

    def disarm(self) -> None:
        if self.armed:
            self.armed = False
            self._sock.settimeout(self.timeout_s)

    def readinto(self, b) -> Optional[int]:
        if self.armed and self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("request not complete within %.0f s" % self.deadline_s)
            self._sock.settimeout(min(left, self.timeout_s))
        n = super().readinto(b)
        if self.armed and self.deadline is None and n:
            self.deadline = time.monotonic() + self.deadline_s
        return n


@dataclass(frozen=True)
class FileSlice:
    """`count` bytes of the file at `path` from `offset`, sent with sendfile
    (in rate-limited steps when `throttle`, a TokenBucket shared by every request, is set).
    `on_sent` is called once the body is out on the wire but for at most UNSENT_BYTES
    (`wait_until_sent`), whether or not the client has received it yet, or, as
    on_sent(slow=True), once it has been SLOW_SEND_S on its way (a client that reads
    slowly is not waited for);
    `on_failed` instead, when the body could not be sent whole: the connection broke,
    or the client read nothing for `stall_limit` (the body is then cut).
    `ready`, for a body still being written (a piece relayed as it arrives):
    ready(sent) is how many of its first bytes may be sent now, waiting a bounded
    time for more than `sent`; at most `sent` ends the body there, short."""
    path: str
    offset: int
    count: int
    throttle: Optional[object] = None
    on_sent: Optional[Callable[[], None]] = None
    on_failed: Optional[Callable[[], None]] = None
    ready: Optional[Callable[[int], int]] = None


@dataclass
class Request:
    method: str
    path: str
    query: Dict[str, list]
    headers: object
    body: bytes
    client: Tuple[str, int]

    def json(self) -> dict:
        try:
            value = json.loads(self.body.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise BadRequest("request body is not JSON: %s" % e)
        if not isinstance(value, dict):
            raise BadRequest("request body must be a JSON object")
        return value


@dataclass
class Response:
    status: int = 200
    body: Union[bytes, FileSlice] = b""
    headers: Dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value, status: int = 200) -> "Response":
        return cls(status, json.dumps(value).encode() + b"\n",
                   {"Content-Type": "application/json"})

    @classmethod
    def text(cls, text: str, status: int = 200) -> "Response":
        return cls(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})


def error_response(error: DflyError) -> Response:
    response = Response.json({"error": str(error), "kind": type(error).__name__}, error.http_status)
    allowed = getattr(error, "allowed", ())
    if allowed:   # RFC 9110: a 405 says which methods the resource does take
        response.headers["Allow"] = ", ".join(allowed)
    return response


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two sends; without this a kept-alive reply's body
    # waits ~40 ms for the client's delayed ACK (Nagle), per request.
    disable_nagle_algorithm = True
    server_version = "dfly/" + __version__
    timeout = 30   # seconds a connection may sit idle or trickle bytes
    _began = 0.0   # when this request's line was read

    def setup(self):
        super().setup()
        self.rfile.close()   # the plain one: reads go through the deadline instead
        self._reads = _DeadlineReads(self.connection, self.server.request_deadline_s, self.timeout)
        self.rfile = io.BufferedReader(self._reads, io.DEFAULT_BUFFER_SIZE)

    def handle_one_request(self):
        self._reads.arm()
        super().handle_one_request()

    def parse_request(self):
        self._began = time.monotonic()
        try:
            if not super().parse_request():   # reads the header lines
                return False
        finally:
            self._reads.disarm()
        if self.request_version == "HTTP/0.9":   # "GET /path": a reply without status or headers
            self.send_error(400, "HTTP/0.9 requests are not accepted")
            return False
        if malformed_headers(self.headers):
            self.close_connection = True
            self.send_error(400, "malformed header line (whitespace before ':', no ':', "
                                 "not ASCII, or folded) or two Host headers")
            return False
        return True

    def do_GET(self):
        self._serve("GET")

    def do_HEAD(self):
        self._serve("HEAD")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_DELETE(self):
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        self.server.request_started()
        try:
            self._serve_one(method)
        finally:
            self.server.request_finished()

    def _serve_one(self, method: str) -> None:
        try:
            request = Request(method, "", {}, self.headers, self._read_body(), self.client_address)
            parts = urlsplit(self.path)
            request.path, request.query = parts.path, parse_qs(parts.query)
            response = self.server.app.route(request)
        except DflyError as e:
            response = error_response(e)
        except Exception:   # a bug must cost one request, not the listener
            log.exception("%s %s failed", method, self.path[:200])
            response = Response.json({"error": "internal error", "kind": "InternalError"}, 500)
        self._write(method, response)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise BadRequest("chunked request bodies are not accepted")
        try:
            n = content_length(self.headers)
        except BadRequest:
            self.close_connection = True
            raise
        if n is None:
            return b""
        if n > MAX_BODY_BYTES:
            self.close_connection = True
            raise BadRequest("request body over %d bytes" % MAX_BODY_BYTES)
        self._reads.resume()   # the body is part of the request: same deadline
        try:
            return self.rfile.read(n)
        finally:
            self._reads.disarm()

    def _write(self, method: str, response: Response) -> None:
        body, source = response.body, None
        if isinstance(body, FileSlice):
            try:   # open before the status goes out, so a vanished file is a 404, not a cut body
                source = open(body.path, "rb")
            except OSError:
                response = error_response(NotFound("the data for this request is gone"))
                body = response.body
        try:
            self._send(method, response, body, source)
        finally:
            if source is not None:
                source.close()

    def _send(self, method: str, response: Response, body, source) -> None:
        size = body.count if source is not None else len(body)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.server.draining:   # the listener is stopping: this is the last reply here
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(size))
        # This side's share of the request's latency (request line read to reply),
        # so a client can tell it from the network's and its own (`dfly bench`).
        self.send_header("Server-Timing", server_timing(time.monotonic() - self._began))
        small = source is None and method != "HEAD" and 0 < size <= SMALL_REPLY_BYTES
        if small:   # sent with the headers, in one segment (flush_headers)
            self._body_after_headers = body
        self.end_headers()
        if method == "HEAD" or size == 0 or small:
            return
        try:
            if source is not None and body.on_sent is not None and body.throttle is None \
                    and hasattr(os, "sendfile") and type(self.connection) is socket.socket:
                self._send_watched(source, body)   # (a TLS socket is not written to by fd)
            elif source is not None:
                sent = send_file_slice(self.connection, source, body,
                                       copy=self.server.tls is not None)
                if sent != body.count:   # the file shrank under us: the client sees a short body
                    self.close_connection = True
                elif body.on_sent is not None:
                    wait_until_sent(self.connection, SLOW_SEND_S)
                    body.on_sent()
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
            if isinstance(body, FileSlice) and body.on_failed is not None:
                body.on_failed()   # (a watched body tells it itself, above)

    def _send_watched(self, source, body: FileSlice) -> None:
        """Send a body whose sender counts it as an upload slot: the slot is given back
        once the body is out or, past SLOW_SEND_S, its reader is found not keeping up
        (_Watch.slow), and a client that takes no byte for STALLED_SEND_S (longer
        beside other bodies on a slow link: stall_limit) is cut off (`on_failed`)."""
        sock = self.connection
        watch = _Watch(body, sock, self.server.watches)
        self.server.watches.add(watch)
        sent = -1
        try:
            sock.settimeout(STALLED_SEND_S)   # also: the descriptor is non-blocking now
            sent = _watched_sendfile(sock, source, watch)
            if sent == body.count:
                _drain_watched(sock, watch)
        except OSError:   # broken, reset, or stalled
            sent = -1
        finally:
            self.server.watches.discard(watch, sent_whole=sent == body.count)
            try:
                sock.settimeout(self.timeout)
            except OSError:
                pass
        if sent == body.count:
            watch.tell_sent()   # (no-op when told slow already)
            return
        self.close_connection = True
        if body.on_failed is not None:
            body.on_failed()

    _body_after_headers = b""

    def flush_headers(self):
        # A small reply's body goes out in the same send as its headers. Two sends
        # were two segments (TCP_NODELAY): a client woken by the first often slept
        # again until the second came, a thread switch more on each side per call.
        body, self._body_after_headers = self._body_after_headers, b""
        if body and hasattr(self, "_headers_buffer"):
            self._headers_buffer.append(body)
        super().flush_headers()

    def send_error(self, code, message=None, explain=None):
        """The stdlib's own parse errors (bad request line, headers too long, unknown
        method): answered like every other error, as JSON with a status line (the
        stdlib sends HTML, and to what is not HTTP at all not even a status), then closed."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":   # not known yet: the line did not parse
            self.request_version = "HTTP/1.0"
        short = self.responses.get(code, ("Error",))[0]
        kind = {404: "NotFound", 405: "MethodNotAllowed", 501: "MethodNotAllowed"}.get(code, "BadRequest")
        body = json.dumps({"error": message or short, "kind": kind}).encode() + b"\n"
        self.send_response(code, short)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if getattr(self, "command", None) != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def log_message(self, format, *args):
        if log.isEnabledFor(logging.DEBUG):   # every request passes here
            log.debug("%s %s", self.address_string(), format % args)

    _date = (0, "")   # (second, its Date header): shared by every handler

    def date_time_string(self, timestamp=None):
        # Formatting the Date header (email.utils) was 4 % of a busy supernode's
        # CPU; it changes once a second. The tuple is replaced whole, so no lock.
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        cached = Handler._date
        if cached[0] != now:
            cached = Handler._date = (now, super().date_time_string(now))
        return cached[1]


def malformed_headers(headers) -> bool:
    """A header line HTTP forbids: the stdlib ends the header block at one it cannot
    read (`Content-Length : 5`, a line without a colon, a non-ASCII name), dropping
    every header after it, and keeps a folded line's CRLF in the value; two Host
    headers name two hosts. Another proxy reading them otherwise sees another
    request: RFC 9112 says refuse with 400."""
    return bool(headers.defects) or len(headers.get_all("Host") or ()) > 1 \
        or any("\r" in v or "\n" in v for v in headers.values() if isinstance(v, str))


def content_length(headers) -> Optional[int]:
    """The request body's length: None without the header; BadRequest unless it is
    one plain decimal number ("1_0", "+5" are what int() takes and no HTTP
    parser should), and when it is given twice (which copy counts is how requests
    are smuggled past another proxy)."""
    values = headers.get_all("Content-Length") or []
    if not values:
        return None
    text = values[0].strip()
    if len(values) > 1:
        raise BadRequest("more than one Content-Length")
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise BadRequest("bad Content-Length")
    return int(text)


def server_timing(seconds: float) -> str:
    """The Server-Timing header value for a reply `seconds` in the making."""
    return "dfly;dur=%.3f" % (seconds * 1000)


def parse_server_timing(value: Optional[str]) -> Optional[float]:
    """Seconds from a Server-Timing header `server_timing` wrote; None otherwise."""
    match = re.match(r"dfly;dur=([0-9]+(?:\.[0-9]+)?)$", value or "")
    return float(match.group(1)) / 1000 if match else None


THROTTLE_STEP = 256 * 1024
SMALL_REPLY_BYTES = 64 * 1024   # a reply body up to this goes out with its headers, in one send
UNSENT_BYTES = 128 * 1024   # "sent": no more than this is still waiting in the socket
WATCHED_STEP = 1 << 20      # a watched body goes out in steps this big, to see how long it takes
SLOW_SEND_S = 3.0           # a watched body this long on its way may count as sent (a slow reader)
STALLED_SEND_S = 10.0       # a client that takes no byte of a watched body this long is cut off
STALLED_SHARE = 2.0         # ... or, beside others, this many times what their median pace takes
STALLED_MAX_S = 60.0        # for STILL_BYTES, up to this (nginx's send_timeout): stall_limit
PROGRESS_S = 1.0            # a reader whose body got no further for this long is not keeping up
STILL_BYTES = 256 * 1024    # ... nor, on a busy link, for as long as the others' median pace takes
                            # this, if longer; and a reader's start is forgiven this much behind
BUSY_SHARE = 0.5            # bodies taking this share of the fastest recent one's pace: a busy link
RECENT_BODIES = 16          # the bodies whose paces are kept (Paces)
SLOW_SHARE = 0.25           # nor one taking less than this share of the median of the others' pace
CHECK_S = 0.25              # how often a watched body's reader is looked at past SLOW_SEND_S


def wait_until_sent(sock: socket.socket, timeout_s: float) -> bool:
    """Wait until (nearly) all that was written to `sock` is out on the wire, not
    only in its send buffer, which can hold much of a piece: TCP_NOTSENT_LOWAT makes
    the socket writable only then. True when it is (or cannot be told: the option
    is missing, the connection broke), False when `timeout_s` passed first."""
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if option is None:
        return True
    try:
        before = sock.getsockopt(socket.IPPROTO_TCP, option)
        sock.setsockopt(socket.IPPROTO_TCP, option, UNSENT_BYTES)
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_WRITE)
                return bool(selector.select(timeout_s))
        finally:
            sock.setsockopt(socket.IPPROTO_TCP, option, before)
    except OSError:
        return True   # the connection broke: what was sent is sent


def _unacked(sock: socket.socket) -> int:
    """Bytes written to `sock` its peer has not acknowledged yet (SIOCOUTQ; 0 where
    the system does not say)."""
    if _OUTQ is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
    except (OSError, ValueError):
        return 0


class Paces:
    """The paces (bytes a second) of the last RECENT_BODIES bodies that went whole,
    shared by threads: the fastest says what one stream gets where the link is not
    shared (Watches, for a server's readers; piece_client, for a download's relays)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._recent: List[float] = []

    def note(self, pace: float) -> None:
        with self._lock:
            self._recent = self._recent[1 - RECENT_BODIES:] + [pace]

    def best(self) -> float:
        with self._lock:
            return max(self._recent, default=0.0)


class Watches:
    """The watched bodies one server is sending now, so a reader can be told slow
    against the others. A supernode feeding n peers at once (the scheduler's
    fan-out) sends each its piece at a share of its link: a 1 MiB piece to each of
    16 peers at 25 Mbit/s takes 5.4 s, a 4 MiB one at 100 Mbit/s 5.7 s. Counted
    slow past SLOW_SEND_S by the clock alone, every such stream lost its relays
    and its slot: the piece went out again and again (the testbed at 25 Mbit/s:
    the supernode's link carried 1.3-2.1 copies of the file)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._now: Set[_Watch] = set()
        self.recent = Paces()   # of the bodies sent whole

    def add(self, watch: "_Watch") -> None:
        with self._lock:
            self._now.add(watch)

    def discard(self, watch: "_Watch", sent_whole: bool = False) -> None:
        with self._lock:
            self._now.discard(watch)
        if sent_whole:
            self.recent.note(watch.pace(time.monotonic()))

    def others_pace(self, watch: "_Watch", now: float) -> List[float]:
        """The pace (bytes a second taken) of the other bodies going a second or more."""
        with self._lock:
            others = [w for w in self._now if w is not watch and now - w.began >= PROGRESS_S]
        return [w.pace(now) for w in others]


class _Watch:
    """One watched body on its way: tells its sender "sent" once, and how far its
    reader has got (what the socket took, less what the peer has not acknowledged)."""

    def __init__(self, body: FileSlice, sock: socket.socket, watches: Watches):
        self.body = body
        self.sock = sock
        self.watches = watches
        self.began = time.monotonic()
        self.told = False
        self.sent = 0                             # bytes the socket took
        self.taken, self.moved = 0, self.began    # bytes the reader took; when that last grew

    def pace(self, now: float) -> float:
        """Bytes a second its reader took (read by other bodies' threads too: no writes)."""
        return max(0, self.sent - _unacked(self.sock)) / max(1e-3, now - self.began)

    def _note_progress(self, now: float) -> None:
        taken = max(0, self.sent - _unacked(self.sock))
        if taken > self.taken:
            self.taken, self.moved = taken, now

    def slow(self, now: float) -> bool:
        """Past SLOW_SEND_S, is the reader not keeping up (reader_slow)?"""
        self._note_progress(now)
        if now - self.began < SLOW_SEND_S:
            return False
        others = self.watches.others_pace(self, now)
        return reader_slow(now - self.moved, self.taken, now - self.began, others,
                           self.watches.recent.best())

    def stall_limit(self, now: float) -> float:
        return stall_limit(self.watches.others_pace(self, now))

    def tell_sent(self, slow: bool = False) -> None:
        if not self.told:
            self.told = True
            if slow:
                self.body.on_sent(slow=True)
            else:
                self.body.on_sent()


def reader_slow(still_s: float, taken: int, elapsed: float, others: List[float],
                recent_best: float = 0.0) -> bool:
    """Is a reader not keeping up: it took no byte for `still_s` >= PROGRESS_S, or it
    took, in `elapsed` seconds, `taken` bytes, STILL_BYTES short of SLOW_SHARE of
    the median of the `others` (the paces of the bodies going beside it)? One at
    the others' pace only shares the link with them, however long its body takes;
    one alone is judged by its progress.
    On a busy link (the bodies together take BUSY_SHARE of what the fastest of the
    `recent_best` and them took alone) each stream gets a trickle (the fan-out's 16
    on a slow link), TCP's backing off after a loss stills one for seconds, and a
    stream begun among busy ones starts slowly: there it may be still for as long
    as the others' median pace takes for STILL_BYTES. A second's stillness there,
    or a pace judged without the allowance at 3 s, told healthy readers slow, and
    their pieces were sent again (6.25 Mbit/s, 16 hosts: 1.3-2.3 copies of the
    file). Where the link is idle, a reader still for a second is the limit
    (a peer reading slowly, holding the server's slots). Pure."""
    pace = taken / elapsed if elapsed > 0 else 0.0
    median = statistics.median(others) if others else 0.0
    busy = pace + sum(others) >= BUSY_SHARE * max([recent_best, pace] + others)
    still_limit = max(PROGRESS_S, STILL_BYTES / median) if busy and median > 0 else PROGRESS_S
    return still_s >= still_limit or taken + STILL_BYTES < SLOW_SHARE * median * elapsed


def stall_limit(others: List[float]) -> float:
    """How long a watched body's reader may take no byte before the body is cut:
    STALLED_SEND_S, or beside `others` (the paces of the bodies going with it)
    STALLED_SHARE times as long as their median pace takes for STILL_BYTES, up to
    STALLED_MAX_S. On a slow busy link (the fan-out's 16 streams at 1.5 Mbit/s each
    move 12 KB/s) a healthy stream's TCP, backing off after losses in a full queue,
    stays still past 10 s; cut there, its piece failed and was sent again, and five
    such failures sent the whole host to the source. Its slot was freed long before
    (reader_slow), so waiting costs a connection only. Pure."""
    median = statistics.median(others) if others else 0.0
    if median <= 0:
        return STALLED_SEND_S
    return min(STALLED_MAX_S, max(STALLED_SEND_S, STALLED_SHARE * STILL_BYTES / median))


def _watched_sendfile(sock: socket.socket, source, watch: _Watch) -> int:
    """sendfile a watched body on `sock` (non-blocking); the bytes sent. Tells
    "sent" (slow) once its reader is found not keeping up (_Watch.slow, past
    SLOW_SEND_S); socket.timeout after stall_limit without a byte taken."""
    body = watch.body
    sent, moved = 0, watch.began
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_WRITE)
        while sent < body.count:
            now = time.monotonic()
            if not watch.told and watch.slow(now):
                watch.tell_sent(slow=True)   # a slow reader: its slot is not held for it
            wait = STALLED_SEND_S - (now - moved)
            if wait <= 0:   # (the others' paces are looked at only then: most bodies never stall)
                limit = watch.stall_limit(now)
                if now - moved >= limit:
                    raise socket.timeout("the client took no byte for %.0fs" % limit)
                wait = min(limit - (now - moved), PROGRESS_S)   # their paces change: look again
            if not watch.told:
                wait = min(wait, max(CHECK_S, SLOW_SEND_S - (now - watch.began)))
            if not selector.select(max(0.0, wait)):
                continue
            try:
                n = os.sendfile(sock.fileno(), source.fileno(), body.offset + sent,
                                min(WATCHED_STEP, body.count - sent))
            except BlockingIOError:
                continue
            if not n:   # the file shrank under us
                break
            sent += n
            watch.sent = sent
            moved = time.monotonic()
    return sent


def _drain_watched(sock: socket.socket, watch: _Watch) -> None:
    """Wait until a watched body's bytes have left the socket, or its reader is
    found slow (then it is told so, and not waited for)."""
    while not watch.told:
        now = time.monotonic()
        if watch.slow(now):
            watch.tell_sent(slow=True)
            return
        if wait_until_sent(sock, max(CHECK_S, SLOW_SEND_S - (now - watch.began))):
            return


def send_file_slice(sock: socket.socket, source, body: FileSlice, copy: bool = False) -> int:
    """sendfile `body` from the open file `source` (read and send it when `copy`:
    a TLS socket); the bytes sent."""
    if body.ready is not None:
        return _send_growing(sock, source, body, copy)
    if copy:
        return _copy_file_slice(sock, source, body)
    if body.throttle is None:
        return _sendfile(sock, source, body.offset, body.count)
    sent = 0
    while sent < body.count:
        step = min(THROTTLE_STEP, body.count - sent)
        _throttle(body, step)
        n = _sendfile(sock, source, body.offset + sent, step)
        if not n:
            break
        sent += n
    return sent


def _sendfile(sock: socket.socket, source, offset: int, count: int) -> int:
    """os.sendfile `count` bytes of `source` from `offset` (fewer if the file ends
    first); waits for room in the socket under its timeout (socket.timeout).
    socket.sendfile does the same but makes a selector, stats the file and polls
    before every call: ~9 us of CPU each, and a relay makes one call per block
    per peer it serves (~245,000 in the 16-host testbed with 64 KiB blocks)."""
    out, fd, sent = sock.fileno(), source.fileno(), 0
    while sent < count:
        try:
            n = os.sendfile(out, fd, offset + sent, count - sent)
        except BlockingIOError:   # a socket with a timeout is non-blocking underneath
            _wait_writable(sock)
            continue
        if not n:   # the file ended
            break
        sent += n
    return sent


def _wait_writable(sock: socket.socket) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_WRITE)
        if not selector.select(sock.gettimeout()):
            raise socket.timeout("timed out")


def _send_growing(sock: socket.socket, source, body: FileSlice, copy: bool) -> int:
    """Send a body as its bytes become ready (FileSlice.ready); the bytes sent."""
    sent = 0
    while sent < body.count:
        end = min(body.ready(sent), body.count)
        if end <= sent:
            break   # no more is coming: the client sees a short body
        part = FileSlice(body.path, body.offset + sent, end - sent, body.throttle)
        n = send_file_slice(sock, source, part, copy)
        sent += n
        if n != part.count:
            break
    return sent


def _copy_file_slice(sock: socket.socket, source, body: FileSlice) -> int:
    # Steps of THROTTLE_STEP: each is one call into OpenSSL (16 records), so the
    # Python around it costs little; socket.sendfile would fall back to 8 KiB ones.
    buffer = memoryview(bytearray(min(THROTTLE_STEP, body.count)))
    source.seek(body.offset)
    sent = 0
    while sent < body.count:
        step = min(THROTTLE_STEP, body.count - sent)
        _throttle(body, step)
        n = source.readinto(buffer[:step])
        if not n:
            break
        sock.sendall(buffer[:n])
        sent += n
    return sent


def _throttle(body: FileSlice, step: int) -> None:
    if body.throttle is not None:
        delay = body.throttle.reserve(step, time.monotonic())
        if delay > 0:
            time.sleep(delay)   # this request's share of the host-wide upload rate


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: Tuple[str, int], app, max_connections: int = 512,
                 sock: Optional[socket.socket] = None, handler=Handler, tls=None,
                 max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT,
                 request_deadline_s: float = REQUEST_DEADLINE_S,
                 client_ipv6_prefix: int = CLIENT_IPV6_PREFIX):
        self.app = app
        self.tls = tls if tls is not None and tls.serves else None   # dfly.tls.TLS
        self.handshakes = 0          # TLS handshakes done, and refused (or not TLS at all)
        self.refused_handshakes = 0
        self.request_deadline_s = request_deadline_s
        self.max_connections_per_client = max_connections_per_client
        self.client_ipv6_prefix = client_ipv6_prefix   # IPv6 clients are counted by this prefix
        self._per_client: Dict[str, int] = {}   # client (address.client_key) -> its connections open now
        self._slots = threading.BoundedSemaphore(max_connections)
        self._busy = threading.Condition()
        self._requests = 0        # requests being answered right now (not idle keep-alives)
        self._open: Set[socket.socket] = set()   # connections open now, cut when it closes
        self.watches = Watches()   # watched bodies being sent now (slow readers told apart)
        self.draining = False
        if sock is None:
            self.address_family, bind_to = _bind_address(address)
            try:
                super().__init__(bind_to, handler)
            except OSError as e:
                raise CannotListen(_cannot_listen(address, self.address_family, e))
        else:   # adopt a listening socket handed over by another process
            self.address_family = sock.family
            super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()[:2]

    def server_bind(self):
        # Not HTTPServer.server_bind: that also looks this host's name up
        # (socket.getfqdn), which waits on DNS, for seconds where the resolver does
        # not answer (an air-gapped host), and nothing here uses the name.
        if self.address_family == socket.AF_INET6 and self.server_address[0] == "::":
            # Dual-stack: IPv4 clients too, whatever the host's default (Linux's
            # net.ipv6.bindv6only, on by default elsewhere).
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)
        self.server_address = self.server_address[:2]
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address):
        client_address = (plain_ip(client_address[0]), client_address[1])
        if not self._client_slot(client_address[0]):
            self._refuse(request)
            return
        if not self._slots.acquire(blocking=False):
            self._client_done(client_address[0])
            self._refuse(request)
            return
        with self._busy:
            self._open.add(request)
        super().process_request(request, client_address)

    def _refuse(self, request) -> None:
        try:
            request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                            b"Connection: close\r\n\r\n")
        except OSError:
            pass
        self.shutdown_request(request)

    def _client_slot(self, host: str) -> bool:
        """Count a connection of `host`; False when it has its share open already."""
        host = client_key(host, self.client_ipv6_prefix)
        with self._busy:
            count = self._per_client.get(host, 0)
            if self.max_connections_per_client > 0 and count >= self.max_connections_per_client:
                log.warning("client %s has %d connections open: refused another", host, count)
                return False
            self._per_client[host] = count + 1
            return True

    def _client_done(self, host: str) -> None:
        host = client_key(host, self.client_ipv6_prefix)
        with self._busy:
            count = self._per_client.get(host, 0) - 1
            if count > 0:
                self._per_client[host] = count
            else:
                self._per_client.pop(host, None)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._busy:
                self._open.discard(request)
            self._client_done(client_address[0])
            self._slots.release()

    def server_close(self):
        """Stop listening and cut every connection still open: a stopped server
        must not go on answering over kept-alive connections."""
        super().server_close()
        with self._busy:
            still_open = list(self._open)
        for conn in still_open:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass   # it closed meanwhile

    def finish_request(self, request, client_address):
        if self.tls is None:
            return super().finish_request(request, client_address)
        conn = self.tls.accept(request, client_address[0])   # in this connection's thread
        with self._busy:
            if conn is None:
                self.refused_handshakes += 1
            else:
                self.handshakes += 1
        if conn is not None:
            try:
                super().finish_request(conn, client_address)
            finally:
                self.shutdown_request(conn)

    def request_started(self) -> None:
        with self._busy:
            self._requests += 1

    def request_finished(self) -> None:
        with self._busy:
            self._requests -= 1
            self._busy.notify_all()

    @property
    def requests_in_progress(self) -> int:
        """Requests being answered now (idle kept-alive connections not counted)."""
        return self._requests

    def drain(self, timeout_s: float) -> bool:
        """Let the requests being answered finish (each closes its connection after);
        True when none is left within timeout_s."""
        with self._busy:
            self.draining = True
            return self._busy.wait_for(lambda: self._requests == 0, timeout=timeout_s)

    def handle_error(self, request, client_address):
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    @property
    def port(self) -> int:
        return self.server_address[1]


class Acceptor:
    """Accepts for one Server or many on one named thread, asleep until a connection
    arrives or stop() wakes it through a socket pair; add, remove, stop.

    The stdlib's serve_forever instead woke every poll interval to see whether it
    should stop: 50 times a second, each a thread switch and a turn at the GIL, in
    every get, seeder and supernode, all the time they ran. `dfly bench` shares one
    acceptor among many simulated peers' servers (dfly/bench/app.py), where a thread
    per peer would be thousands."""

    def __init__(self, name: str):
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()   # for add and remove, which other threads call
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> "Acceptor":
        self._thread.start()
        return self

    def add(self, server: "Server") -> None:
        """Accept for `server` (bound and listening) from now on."""
        server.socket.setblocking(False)   # a connection reset before accept() must not block the loop
        with self._lock:
            self._selector.register(server.socket, selectors.EVENT_READ, server)

    def remove(self, server: "Server") -> None:
        """Stop accepting for `server`; call before closing its socket."""
        with self._lock:
            try:
                self._selector.unregister(server.socket)
            except (KeyError, ValueError):
                pass   # never added, or removed already

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _loop(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select():
                if key.data is None:   # the wake-up pair: stop() was called
                    self._drain_wake()
                elif not self._stopping:
                    # What serve_forever does when its socket is readable: accept
                    # (nothing on an OSError: no connection after all, or the server
                    # was closed meanwhile), then the server's own process_request
                    # (its limits, a thread for the connection).
                    key.data._handle_request_noblock()

    def _drain_wake(self) -> None:
        try:
            self._wake_r.recv(64)
        except OSError:
            pass


class Listener:
    """A Server with an Acceptor of its own (a named thread), and a stop that really
    stops it."""

    def __init__(self, name: str, address: Tuple[str, int], app, max_connections: int = 512,
                 sock: Optional[socket.socket] = None, handler=Handler,
                 tls=None,
                 max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT,
                 request_deadline_s: float = REQUEST_DEADLINE_S,
                 client_ipv6_prefix: int = CLIENT_IPV6_PREFIX):
        # tls: a dfly.tls.TLS, whose certificate every connection is served with.
        self.server = Server(address, app, max_connections, sock, handler, tls,
                             max_connections_per_client, request_deadline_s, client_ipv6_prefix)
        self.name = name
        self._acceptor: Optional[Acceptor] = None   # once started

    @property
    def address(self) -> Tuple[str, int]:
        return self.server.server_address[:2]

    def start(self) -> "Listener":
        self._acceptor = Acceptor(self.name)
        self._acceptor.add(self.server)
        self._acceptor.start()
        return self

    def stop(self, drain_s: float = 0.0) -> None:
        """Stop accepting; with drain_s, first let requests in progress (a piece a
        peer is fetching from us) finish, for at most that long, before closing."""
        if self._acceptor is not None:
            self._acceptor.stop()
        if drain_s > 0:
            self.server.drain(drain_s)
        self.server.server_close()
        if self.server.tls is not None:
            log.info("%s served %d TLS handshakes, refused %d", self.name, self.server.handshakes,
                     self.server.refused_handshakes)

    def fileno(self) -> int:
        return self.server.socket.fileno()


def check_can_listen(address: Tuple[str, int]) -> None:
    """CannotListen now when `address` cannot be listened on (taken, not this host's),
    for a listener that starts later; the port is let go again at once."""
    Server(address, None).server_close()


def compile_routes(routes):
    """[(method, path regex, handler name)] -> the same with the regex compiled, anchored."""
    return [(m, re.compile(p + r"/?\Z"), name) for m, p, name in routes]


def match_route(routes, request: Request):
    """(handler name, path params) for `request`; NotFound / 405 otherwise."""
    method = "GET" if request.method == "HEAD" else request.method
    allowed: List[str] = []
    for m, pattern, name in routes:
        found = pattern.match(request.path)
        if found:
            if m == method:
                return name, found.groupdict()
            allowed += [m, "HEAD"] if m == "GET" else [m]
    if allowed:
        raise MethodNotAllowed("%s not allowed on %s" % (request.method, request.path[:200]),
                               sorted(set(allowed)))
    raise NotFound("no such endpoint: %s" % request.path[:200])


class MethodNotAllowed(BadRequest):
    """`allowed`: the methods the path does take, for the 405's Allow header."""
    http_status = 405

    def __init__(self, message: str = "", allowed: Iterable[str] = ()):
        super().__init__(message)
        self.allowed = tuple(allowed)


def piece_number(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise BadRequest("piece number must be a non-negative integer")
    return int(text)


def _bind_address(address: Tuple[str, int]) -> Tuple[int, Tuple[str, int]]:
    """The socket family for listening on `address`, and the (host, port) to bind."""
    host, port = address[0] or "0.0.0.0", address[1]
    if is_ipv6(host):
        return socket.AF_INET6, (host, port)
    try:
        socket.inet_aton(host)
        return socket.AF_INET, (host, port)
    except OSError:
        pass
    try:   # a host name: the first address the resolver gives, of either family
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, socket.AF_UNSPEC,
                                                       socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0]
    except (OSError, IndexError) as e:
        raise CannotListen("cannot listen on %s: the name does not resolve (%s)"
                           % (format_address(host, port), e))
    return family, sockaddr[:2]


def cannot_listen(address: Tuple[str, int], family: int, error: OSError) -> str:
    """The one line every listener (HTTP, gossip) gives for an address it cannot bind."""
    return _cannot_listen(address, family, error)


def _cannot_listen(address: Tuple[str, int], family: int, error: OSError) -> str:
    line = "cannot listen on %s: %s" % (format_address(address[0] or "0.0.0.0", address[1]),
                                        error.strerror or error)
    if family == socket.AF_INET6 and error.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
        line += " (this host has no IPv6)"
    elif family == socket.AF_INET6 and error.errno == errno.EADDRNOTAVAIL:
        line += " (not an address of this host, or IPv6 is off here)"
    return line

