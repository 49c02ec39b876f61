"""A socket-level fuzzer for dfly's listeners, and the private network it runs in.

Strategy: start from seed requests a real client would send (so the mutants
reach past the request line into routing, JSON and file serving), apply one to
three byte-level mutations to each (truncate, flip, insert a hostile token,
delete or repeat a span, swap a number for an extreme one, splice two seeds),
send it on a fresh connection, half-close, and read what comes back. A seeded
RNG makes a run repeatable; it stops after `max_requests` or `max_seconds`,
whichever comes first. Every reply is checked as it arrives: no traceback, no
"internal error" (a bug the listener caught), none of the canary's bytes (a
file outside the data dir) and no /etc/passwd.

Mutants can name any host, so a fuzzed listener could be made to fetch from
anywhere (a supernode fetches registered URLs, the daemon proxies). They are
therefore only ever sent inside `private_network()`: a network namespace of
the test's own with nothing in it but a loopback interface.
"""
import ctypes
import fcntl
import functools
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1

TOKENS = [b"..", b"../", b"%2e%2e%2f", b"%2E%2e/", b"..%2f", b"%00", b"\x00", b"\xff\xfe", b"\r\n",
          b"\n", b"\r", b" ", b"\t", b"-1", b"0", b"99999999999999999999999", b"1_0", b"1e3", b"%",
          b"%zz", b":", b"[", b"]", b"{", b"}", b'"', b"\\", b"/", b"//", b"?", b"#", b"@", b"A" * 4000,
          b"\r\nContent-Length: 5", b"\r\nContent-Length: 1_0", b"\r\nTransfer-Encoding: chunked",
          b"\r\nRange: bytes=0-0", b"\r\nRange: bytes=-0", b"\r\nExpect: 100-continue",
          b"/etc/passwd", b"\xc2\xb2", b"\xd9\xa3", b"NaN", b"Infinity", b"null", b"[]", b"true"]
NUMBERS = [b"0", b"-1", b"1", b"65536", b"4294967296", b"18446744073709551616", b"1e308", b"-0",
           b"00", b"9" * 40, b"1.5", b"0x10"]
LEAKS = [b"Traceback", b'File "', b"root:x:0:"]


@dataclass
class FuzzReport:
    sent: int = 0
    statuses: Dict[Optional[int], int] = field(default_factory=dict)
    findings: List[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, status: Optional[int]) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


class Fuzzer:
    """fuzz(address) sends mutants of `seeds`; `canary` is bytes no reply may hold."""

    def __init__(self, seeds: Sequence[bytes], canary: bytes, rng_seed: int = 0,
                 max_requests: int = 300, max_seconds: float = 8.0, reply_timeout_s: float = 3.0,
                 finish: Optional[Callable[[bytes], bytes]] = None):
        """`finish`: applied to every mutant before it is sent (e.g. signs it afresh, so
        mutants reach past a signature check)."""
        assert seeds
        self.finish = finish
        self.seeds = list(seeds)
        self.canary = canary
        self.rng = random.Random(rng_seed)
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.reply_timeout_s = reply_timeout_s

    def fuzz(self, address: Tuple[str, int]) -> FuzzReport:
        report = FuzzReport()
        began = time.monotonic()
        while report.sent < self.max_requests and time.monotonic() - began < self.max_seconds:
            payload = self.mutant()
            if self.finish is not None:
                payload = self.finish(payload)
            reset = self.rng.random() < 0.05   # hang up at once, with a RST: the reply has nowhere to go
            reply = exchange(address, payload, self.reply_timeout_s, reset=reset)
            report.sent += 1
            report.add(status_of(reply))
            for problem in self.problems(reply):
                report.findings.append("%s, answering %r" % (problem, payload[:300]))
        report.seconds = time.monotonic() - began
        return report

    def mutant(self) -> bytes:
        payload = self.rng.choice(self.seeds)
        if self.rng.random() < 0.1:   # some untouched: keep the listener's state realistic
            return payload
        for _ in range(self.rng.randint(1, 3)):
            payload = self.rng.choice(self._mutations)(self, payload)
        return payload

    def problems(self, reply: bytes) -> List[str]:
        found = ["reply leaked %r" % leak for leak in LEAKS if leak in reply]
        if self.canary in reply:
            found.append("reply holds the canary (a file outside the data dir)")
        if b'"InternalError"' in reply:
            found.append("the listener caught a bug (500 InternalError)")
        return found

    # mutations: bytes in, bytes out -------------------------------------------------------
    def _at(self, payload: bytes) -> int:
        return self.rng.randint(0, len(payload))

    def _truncate(self, payload: bytes) -> bytes:
        return payload[:self._at(payload)]

    def _flip(self, payload: bytes) -> bytes:
        if not payload:
            return payload
        i = self.rng.randrange(len(payload))
        return payload[:i] + bytes([self.rng.randrange(256)]) + payload[i + 1:]

    def _insert(self, payload: bytes) -> bytes:
        i = self._at(payload)
        return payload[:i] + self.rng.choice(TOKENS) + payload[i:]

    def _delete(self, payload: bytes) -> bytes:
        i = self._at(payload)
        return payload[:i] + payload[i + self.rng.randint(1, 16):]

    def _repeat(self, payload: bytes) -> bytes:
        i = self._at(payload)
        span = payload[i:i + self.rng.randint(1, 64)]
        return payload[:i] + span * self.rng.randint(2, 50) + payload[i:]

    def _number(self, payload: bytes) -> bytes:
        spans = [m.span() for m in re.finditer(rb"\d+", payload)]
        if not spans:
            return self._insert(payload)
        start, end = self.rng.choice(spans)
        return payload[:start] + self.rng.choice(NUMBERS) + payload[end:]

    def _splice(self, payload: bytes) -> bytes:
        other = self.rng.choice(self.seeds)
        return payload[:self._at(payload)] + other[self.rng.randint(0, len(other)):]

    def _chain(self, payload: bytes) -> bytes:
        """Another request after this one on the same connection (kept alive, pipelined)."""
        return payload + self.rng.choice(self.seeds)

    _mutations = [_truncate, _flip, _insert, _insert, _delete, _repeat, _number, _number, _splice,
                  _chain]


def request(method: str, target: str, headers: Sequence[Tuple[str, str]] = (), body: bytes = b"") -> bytes:
    """A well-formed HTTP/1.1 request, as bytes: a seed."""
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: 127.0.0.1"]
    lines += ["%s: %s" % kv for kv in headers]
    if body:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def traversals(canary_path: str, data_dir: str, templates: Sequence[str]) -> List[bytes]:
    """GETs that try to reach `canary_path` from inside `data_dir`: each template's
    {} filled with a ../ chain, its %-encoded forms, and the absolute path."""
    relative = os.path.relpath(canary_path, data_dir)
    ups = "../" * 12 + canary_path.lstrip("/")
    forms = [relative, ups, ups.replace("../", "..%2f"), ups.replace("../", "%2e%2e%2f"),
             ups.replace("/", "%2f"), canary_path, canary_path.replace("/", "%2f")]
    return [request("GET", template.format(form)) for template in templates for form in forms]


def exchange(address: Tuple[str, int], payload: bytes, timeout_s: float, reset: bool = False) -> bytes:
    """Send `payload`, half-close, return what comes back until the server closes
    (or the timeout: then what came so far). With `reset`, close at once with a RST."""
    try:
        sock = socket.create_connection(address, timeout=timeout_s)
    except OSError:
        return b""
    chunks: List[bytes] = []
    deadline = time.monotonic() + timeout_s
    with sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:   # the server may answer and hang up before reading it all
            pass
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return b""
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(reply: bytes) -> Optional[int]:
    m = re.match(rb"HTTP/\d\.\d (\d{3}) ", reply)
    return int(m.group(1)) if m else None


# counting what a listener holds -----------------------------------------------------------

def open_fds(pid: Optional[int] = None) -> int:
    return len(os.listdir("/proc/%s/fd" % (pid or "self")))


def thread_count(pid: Optional[int] = None) -> int:
    return threading.active_count() if pid is None else len(os.listdir("/proc/%d/task" % pid))


# the private network -----------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def why_no_private_network() -> str:
    """"" when private_network() works here; else why not (for a skip)."""
    if not os.path.exists("/proc/thread-self/ns/net"):
        return "needs Linux network namespaces"
    if os.geteuid() != 0:
        return "needs root (a network namespace of its own)"
    probe = "import ctypes, sys; sys.exit(ctypes.CDLL(None).unshare(%d) != 0)" % CLONE_NEWNET
    if subprocess.run([sys.executable, "-c", probe], timeout=30).returncode != 0:
        return "cannot make a network namespace here (no CAP_SYS_ADMIN?)"
    return ""


@contextmanager
def private_network() -> Iterator[None]:
    """Move the calling thread into a new network namespace holding only a loopback
    interface, and back out at the end. Threads and processes it starts meanwhile
    live in it for good: what they connect to can only be each other."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
        try:
            _loopback_up()
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the host's network failed")
    finally:
        os.close(home)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        current = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0))
        flags = struct.unpack("16sH", current[:18])[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def free_port() -> int:
    """A port nothing listens on. Safe only inside private_network(): nobody else is there."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
