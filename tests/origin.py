"""A real origin for tests: http.server on 127.0.0.1:0 (or ::1, host="::1") serving
files from a folder.

It speaks enough HTTP for the supernode's cache logic to be exercised for real:
ETag / Last-Modified with If-None-Match / If-Modified-Since (304), and single
byte ranges with If-Range (206 + Content-Range, 416; or none at all, with
`no_ranges`). It counts, per path, the requests it received, those it answered
and the body bytes it actually put on the wire, so a test can say "the origin
served the file exactly once".

Each path can be given a Fault: a status (404, 500), a hold (wait on an event
before answering), death after N body bytes (FIN, or RST with reset=True), a
short body under a Content-Length that promises more, a slow trickle, a
stall after N bytes until the origin is released or stopped, no Range
support at all, or a broken protocol: a garbage status line, more headers
than clients accept (100), or a header dripped a byte at a time. Nothing
sleeps on a clock it cannot be woken from: every wait is on the origin's stop
event.

A file changes on demand (`add` again: new bytes, ETag and date); a response
already under way goes on with the bytes it started with, as a real server's
open file would.
"""
import email.utils
import hashlib
import os
import socket
import ssl
import struct
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple
from urllib.parse import unquote, urlsplit

from helpers import QuietHandler, Serving, send_body

BLOCK = 256 * 1024


@dataclass
class Fault:
    """How to misbehave on one path; fields combine (hold first, then the rest)."""
    status: int = 0                 # answer this status with a short error body
    hold: Optional[threading.Event] = None   # wait for this, then answer with the file then
    die_after: Optional[int] = None  # close the connection after this many body bytes
    reset: bool = False             # ...abortively (RST) instead of with a FIN
    short_by: int = 0               # Content-Length promises this many bytes more than sent
    chunk_delay_s: float = 0.0      # slow: wait this long between blocks
    chunk_bytes: int = BLOCK
    stall_after: Optional[int] = None  # send this many bytes, then stall until released
    status_line: Optional[bytes] = None  # answer this line (and a blank one) instead of HTTP
    extra_headers: int = 0          # add this many headers to the answer (http.client takes 100)
    drip_s: float = 0.0             # send a status line, then one header byte this often until
                                    # released or stopped (no read ever times out; none ends)
    no_ranges: bool = False         # ignore Range (always 200, whole body) and say no Accept-Ranges
    no_etag: bool = False           # send no ETag (Last-Modified only, as `python3 -m http.server`)
    no_last_modified: bool = False  # send no Last-Modified (with no_etag: no validator at all)
    require: Optional[Tuple[str, str]] = None   # (header, value) a request must carry, else 403


@dataclass
class Served:
    """One request as the origin saw it."""
    method: str
    status: int
    headers: Dict[str, str]
    body_bytes: int


@dataclass
class OriginFile:
    name: str
    path: str
    url: str
    data: bytes
    etag: str
    last_modified: str
    content_headers: Dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha256


class Origin:
    """Start with Origin(root); stop() at teardown (the fixture does it)."""

    def __init__(self, root: str, host: str = "127.0.0.1", context: Optional[ssl.SSLContext] = None):
        self.root = root
        self.host = host
        os.makedirs(root, exist_ok=True)
        self.stopped = threading.Event()
        self.released = threading.Event()
        self.no_ranges = False   # answer every Range request with the whole file (200)
        self._lock = threading.Lock()
        self._files: Dict[str, OriginFile] = {}
        self._faults: Dict[str, Fault] = {}
        self._served: Dict[str, List[Served]] = {}
        self._arrived: Dict[str, int] = {}
        self._serving = Serving(_handler_for(self), "test-origin", host=host, context=context, quiet=True)
        self.server = self._serving.server

    # setup ---------------------------------------------------------------------
    @property
    def address(self) -> Tuple[str, int]:
        return self.server.server_address[:2]

    def url(self, name: str) -> str:
        shown = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d/%s" % (shown, self.address[1], name)

    def add(self, name: str, data: bytes, content_headers: Optional[Dict[str, str]] = None) -> OriginFile:
        """Serve `data` at /name (replacing what was there: new ETag and date), with
        `content_headers` (default Content-Type: application/octet-stream)."""
        path = os.path.join(self.root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        mtime = os.stat(path).st_mtime
        entry = OriginFile(name, path, self.url(name), data,
                           '"%s"' % hashlib.sha256(data).hexdigest()[:24],
                           email.utils.formatdate(mtime, usegmt=True),
                           dict(content_headers or {"Content-Type": "application/octet-stream"}))
        with self._lock:
            self._files[name] = entry
        return entry

    def fault(self, name: str, fault: Optional[Fault] = None, **fields) -> Fault:
        """Make /name misbehave: fault(name, status=500), fault(name, die_after=N)..."""
        fault = fault or Fault(**fields)
        with self._lock:
            self._faults[name] = fault
        return fault

    def heal(self, name: str) -> None:
        with self._lock:
            self._faults.pop(name, None)

    def release(self) -> None:
        """Let every stalled response go on."""
        self.released.set()

    def stop(self) -> None:
        self.stopped.set()
        self.released.set()
        with self._lock:
            holds = [f.hold for f in self._faults.values() if f.hold is not None]
        for hold in holds:
            hold.set()
        self._serving.stop()

    # what happened ----------------------------------------------------------------
    def served(self, name: str) -> List[Served]:
        with self._lock:
            return list(self._served.get(name, ()))

    def body_bytes(self, name: str) -> int:
        return sum(s.body_bytes for s in self.served(name))

    def requests(self, name: str) -> int:
        return len(self.served(name))

    def arrived(self, name: str) -> int:
        """Requests for /name received so far, answered or not (a held one too)."""
        with self._lock:
            return self._arrived.get(name, 0)

    # internals, called by the handler -----------------------------------------------
    def _lookup(self, name: str):
        with self._lock:
            self._arrived[name] = self._arrived.get(name, 0) + 1
            return self._files.get(name), self._faults.get(name)

    def _record(self, name: str, served: Served) -> None:
        with self._lock:
            self._served.setdefault(name, []).append(served)


def _handler_for(origin: Origin):
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30

        def do_GET(self):
            self._serve(head=False)

        def do_HEAD(self):
            self._serve(head=True)

        def _serve(self, head: bool) -> None:
            self.close_connection = True
            name = unquote(urlsplit(self.path).path).lstrip("/")
            entry, fault = origin._lookup(name)
            if fault is not None and fault.hold is not None:
                fault.hold.wait(30)
                entry = origin._lookup(name)[0]   # what the origin has once released
            headers = {k: v for k, v in self.headers.items()}
            record = Served(self.command, 0, headers, 0)
            # Recorded before the answer (its status and byte count filled in as it goes),
            # so a client that has the answer always finds the request in served().
            origin._record(name, record)
            self._answer(entry, fault or Fault(), head, record)

        def _answer(self, entry, fault: Fault, head: bool, record: Served) -> None:
            if fault.hold is not None:
                fault.hold.wait(30)
            if fault.status_line is not None or fault.drip_s:
                self._break_protocol(fault, record)
                return
            refused = fault.require is not None and self.headers.get(fault.require[0]) != fault.require[1]
            if entry is None or fault.status or refused:
                status = fault.status or (403 if refused else 404)
                record.status = status
                body = b"origin says %d\n" % status
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if not head:
                    self.wfile.write(body)
                return
            if self._not_modified(entry):
                record.status = 304
                self.send_response(304)
                if not fault.no_etag:
                    self.send_header("ETag", entry.etag)
                self.send_header("Last-Modified", entry.last_modified)
                self.send_header("Connection", "close")
                self.end_headers()
                return
            start, end, status = self._range(entry) if not fault.no_ranges else (0, entry.size, 200)
            record.status = status
            if status == 416:
                send_body(self, b"", 416, {"Content-Range": "bytes */%d" % entry.size, "Connection": "close"})
                return
            self.send_response(status)
            for header, value in entry.content_headers.items():
                self.send_header(header, value)
            self.send_header("Content-Length", str(end - start + fault.short_by))
            if not fault.no_etag:
                self.send_header("ETag", entry.etag)
            if not fault.no_last_modified:
                self.send_header("Last-Modified", entry.last_modified)
            if not fault.no_ranges:
                self.send_header("Accept-Ranges", "bytes")
            for i in range(fault.extra_headers):
                self.send_header("X-Filler-%d" % i, "x")
            if status == 206:
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, entry.size))
            self.send_header("Connection", "close")
            self.end_headers()
            if not head:
                self._body(entry, start, end, fault, record)

        def _break_protocol(self, fault: Fault, record: Served) -> None:
            try:
                if fault.status_line is not None:
                    self.wfile.write(fault.status_line + b"\r\n\r\n")
                    return
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(100000):   # bounded; in practice until released or stopped
                    if origin.released.is_set() or origin.stopped.wait(fault.drip_s):
                        break
                    self.wfile.write(b"z")
            except OSError:
                pass

        def _not_modified(self, entry) -> bool:
            inm = self.headers.get("If-None-Match")
            if inm is not None:
                tags = [t.strip() for t in inm.split(",")]
                return "*" in tags or entry.etag in tags or "W/" + entry.etag in tags
            ims = self.headers.get("If-Modified-Since")
            if ims is not None:
                try:
                    since = email.utils.parsedate_to_datetime(ims)
                    current = email.utils.parsedate_to_datetime(entry.last_modified)
                except (TypeError, ValueError):
                    return False
                return current <= since
            return False

        def _range(self, entry) -> Tuple[int, int, int]:
            """(start, end exclusive, status) for the Range header, if any applies."""
            size = entry.size
            header = self.headers.get("Range")
            if origin.no_ranges or not header or not header.startswith("bytes=") or "," in header:
                return 0, size, 200
            if_range = self.headers.get("If-Range")
            if if_range is not None and if_range not in (entry.etag, entry.last_modified):
                return 0, size, 200
            first, _, last = header[len("bytes="):].strip().partition("-")
            try:
                if first == "":
                    count = int(last)
                    start, end = max(0, size - count), size
                else:
                    start = int(first)
                    end = min(size, int(last) + 1) if last else size
            except ValueError:
                return 0, size, 200
            if start >= size or start >= end:
                return 0, 0, 416
            return start, end, 206

        def _body(self, entry, start: int, end: int, fault: Fault, record: Served) -> None:
            limit = end - start
            if fault.die_after is not None:
                limit = min(limit, fault.die_after)
            stall_at = fault.stall_after
            sent = 0
            body = memoryview(entry.data)[start:end]   # the version this response began with
            while sent < limit:
                if stall_at is not None and sent >= stall_at:
                    origin.released.wait(60)
                    stall_at = None
                    if origin.stopped.is_set():
                        break
                want = min(fault.chunk_bytes, limit - sent)
                if stall_at is not None:
                    want = min(want, stall_at - sent)
                block = body[sent:sent + want]
                if not block:
                    break
                record.body_bytes = sent + len(block)   # counted before a client can have it
                try:
                    self.wfile.write(block)
                except OSError:
                    record.body_bytes = sent
                    break
                sent += len(block)
                if fault.chunk_delay_s and origin.stopped.wait(fault.chunk_delay_s):
                    break
            if fault.die_after is not None and sent < end - start:
                self._die(fault.reset)

        def _die(self, reset: bool) -> None:
            try:
                if reset:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                else:
                    self.connection.shutdown(socket.SHUT_WR)
                self.connection.close()
            except OSError:
                pass

    return Handler
