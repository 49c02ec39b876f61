"""Small tools shared by the test tiers: polling with a bound, content, raw HTTP,
threads with a bound, fake servers on a thread, and fake peers that lie or die mid-piece."""
import hashlib
import json
import os
import random
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

MiB = 1 << 20


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.01,
               message: str = "") -> object:
    """Poll `predicate` until it returns something truthy (returned) or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %.1fs: %s"
                                 % (timeout, message or getattr(predicate, "__name__", predicate)))
        pause.wait(interval)


def content(size: int, seed: int = 0) -> bytes:
    """`size` reproducible pseudo-random bytes (no two pieces alike)."""
    if size == 0:
        return b""
    return random.Random(seed).getrandbits(size * 8).to_bytes(size, "little")   # randbytes is 3.9+


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def leftovers(folder: str) -> List[str]:
    """Temporary download files (`.NAME.XXXX.dfly-part`) left in `folder`."""
    return sorted(n for n in os.listdir(folder) if n.endswith(".dfly-part"))


Outcome = Tuple[object, Optional[BaseException]]


def run_all(calls: Sequence[Callable[[], object]], timeout: float = 30.0) -> List[Outcome]:
    """Run each call on its own named thread at once; [(result, error)] in order.
    Fails if any is still running after `timeout`."""
    out: List[Outcome] = [(None, None)] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait(timeout)
        try:
            out[i] = (calls[i](), None)
        except BaseException as e:   # handed back to the test
            out[i] = (None, e)

    threads = [threading.Thread(target=run, args=(i,), name="test-call-%d" % i, daemon=True)
               for i in range(len(calls))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, "still running after %.0fs: %s" % (timeout, stuck)
    return out


@contextmanager
def refused_address() -> Iterator[Tuple[str, int]]:
    """A 127.0.0.1 port that refuses connections: bound, never listening, held
    for the duration so nothing else can take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[:2]
    finally:
        sock.close()


def reserve_ports(n: int, host: str = "127.0.0.1") -> List[str]:
    """n loopback addresses free a moment ago, for supernode cluster members, which must
    know each other's addresses before they start: the one place the suite names ports
    up front. Taken below the kernel's ephemeral range, whence every bind to port 0 and
    every outgoing connection gets its port: a port bound to 0 here and closed could be
    handed to the next listener or connection before the member (often another process)
    binds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low = _ephemeral_ports()[0]
    rng = random.Random()
    ports: List[int] = []
    for _ in range(1000):   # bounded: the range is thousands of ports, nearly all free
        if len(ports) == n:
            return [("[%s]:%d" if ":" in host else "%s:%d") % (host, p) for p in ports]
        port = rng.randrange(max(1024, low - 12000), low)
        if port not in ports and _bindable(family, host, port):
            ports.append(port)
    raise AssertionError("no %d free ports below %d on %s" % (n, low, host))


def _ephemeral_ports() -> Tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(v) for v in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999   # Linux's default


def _bindable(family: int, host: str, port: int) -> bool:
    with socket.socket(family) as probe:
        try:
            probe.bind((host, port))
            return True
        except OSError:
            return False


# raw HTTP -------------------------------------------------------------------------------

def raw_exchange(address: Tuple[str, int], payload: bytes, timeout: float = 5.0) -> bytes:
    """Send `payload` as is, half-close, and return everything the server sends back
    until it closes (or b"" when it just hangs up)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:   # the server may hang up before reading everything
            pass
        return read_until_closed(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything `sock` receives until the server closes (a reset or the socket's
    timeout ends it too)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(reply: bytes) -> Optional[int]:
    """The status code of the first response in `reply`; None if there is none."""
    if not reply.startswith(b"HTTP/"):
        return None
    try:
        return int(reply.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def http_status(address: Tuple[str, int], method: str, path: str, body: bytes = b"",
            headers: Optional[Dict[str, str]] = None) -> Optional[int]:
    """One raw HTTP/1.1 request with Connection: close; the status, or None on a hang-up."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: test", "Connection: close"]
    headers = dict(headers or {})
    if body and "Content-Length" not in headers:
        headers["Content-Length"] = str(len(body))
    lines += ["%s: %s" % kv for kv in headers.items()]
    payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    return status_of(raw_exchange(address, payload))


def healthy(address: Tuple[str, int]) -> bool:
    return http_status(address, "GET", "/healthz") == 200


# fake servers ---------------------------------------------------------------------------

class Serving:
    """`handler_class` served by `server_class` on HOST:0 on a thread named `name`
    until stop() (or the end of a `with`). `host` with a ":" binds IPv6; `context`
    serves TLS, the handshake on the handler's thread so a client that never
    finishes one holds up no other; `quiet`: a handler's error (a client hanging
    up, a failed handshake) prints nothing, for servers that provoke them."""

    def __init__(self, handler_class, name: str, server_class=ThreadingHTTPServer,
                 host: str = "127.0.0.1", context: Optional[ssl.SSLContext] = None,
                 quiet: bool = False):
        if ":" in host:
            server_class = type(server_class.__name__ + "6", (server_class,),
                                {"address_family": socket.AF_INET6})
        self.server = server_class((host, 0), handler_class)
        self.server.daemon_threads = True
        if quiet:
            self.server.handle_error = lambda request, client_address: None
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True,
                                                     do_handshake_on_connect=False)
        self.port: int = self.server.server_address[1]
        self.address = "%s:%d" % ("[%s]" % host if ":" in host else host, self.port)   # HOST:PORT
        self._stopped = False
        self._thread = threading.Thread(target=self.server.serve_forever, name=name,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)

    def __enter__(self) -> "Serving":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class QuietHandler(BaseHTTPRequestHandler):
    """A fake server's handler: it logs nothing (the tests assert what matters)."""

    def log_message(self, *args) -> None:
        pass


def send_body(handler: BaseHTTPRequestHandler, body: bytes, status: int = 200,
              headers: Optional[Dict[str, str]] = None) -> None:
    """Answer `status` with `body` and its Content-Length, after `headers`."""
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def send_json(handler: BaseHTTPRequestHandler, value: object, status: int = 200) -> None:
    send_body(handler, json.dumps(value).encode(), status, {"Content-Type": "application/json"})


# fake peers -------------------------------------------------------------------------------

class FakePeer(Serving):
    """An uploader that claims pieces and serves them badly.

    mode "corrupt": the right length of the wrong bytes.
    mode "die": announce the whole piece, send half, close the connection.
    `piece_size(n)` gives the size the supernode expects for piece n.
    """

    def __init__(self, mode: str, piece_size: Callable[[int], int]):
        assert mode in ("corrupt", "die")
        self.mode = mode
        self.piece_size = piece_size
        self.requests: List[str] = []
        self._lock = threading.Lock()
        peer = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def do_GET(self):
                self.close_connection = True
                parts = self.path.split("?")[0].strip("/").split("/")   # ?peer= names the requester
                if len(parts) != 5 or parts[0] != "v1" or parts[3] != "pieces" or not parts[4].isdigit():
                    self.send_error(404)
                    return
                with peer._lock:
                    peer.requests.append(self.path)
                size = peer.piece_size(int(parts[4]))
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                if peer.mode == "corrupt":
                    block = b"\xee" * min(size, MiB)
                    left = size
                    while left:
                        self.wfile.write(block[:left])
                        left -= min(left, len(block))
                else:
                    self.wfile.write(b"\xee" * (size // 2))
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)

        super().__init__(Handler, "fake-peer-" + mode, quiet=True)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)


@contextmanager
def redirector(keep_path: bool = True, context: Optional[ssl.SSLContext] = None
               ) -> Iterator[ThreadingHTTPServer]:
    """127.0.0.1:PORT/PATH -> 302 to the URL set as .target (PATH appended when
    `keep_path`); .seen: the headers of each request. `context`: over TLS."""
    class Handler(QuietHandler):
        def do_GET(self):
            server.seen.append(dict(self.headers))
            send_body(self, b"", 302, {"Location": server.target + (self.path if keep_path else "")})

    with Serving(Handler, "redirector", context=context) as serving:
        server = serving.server
        server.seen = []
        yield server


def first_task(address: str) -> dict:
    """The first task a supernode lists, {} when it lists none."""
    from dfly.supernode.client import SupernodeClient
    client = SupernodeClient(address, timeout_s=5)
    try:
        tasks = client.tasks()
        return tasks[0] if tasks else {}
    finally:
        client.close()


def failed_fetch_kept(address: str, url: str, digest: Optional[str] = None) -> dict:
    """Start a supernode's fetch of `url` (for a peer that registers and stays) and wait
    for it to fail; the task's state. The peer stays, so the failed task stays in memory
    (without one the janitor drops it within a second at --failure-ttl 0, keeping only
    its whole pieces on disk: a test of the task's state would race that)."""
    from dfly.protocol.messages import RegisterRequest
    from dfly.supernode.client import SupernodeClient
    client = SupernodeClient(address, timeout_s=10)
    try:
        tid, _ = client.register(RegisterRequest(url=url, peer_id="bystander", peer_port=9,
                                                 peer_host="127.0.0.1", digest=digest))
        return wait_until(lambda: _failed(client.task(tid)), 30, message="the fetch of %s failed" % url)
    finally:
        client.close()


def _failed(task: dict) -> Optional[dict]:
    return task if task["state"] == "failed" else None


def piece_access(secret, task_id: str, requester: str = "tester") -> Tuple[str, Dict[str, str]]:
    """The query and header a scheduled `requester` reads `task_id`'s pieces with, from
    a holder whose key is `secret` (a peer's secret, str; or a supernode's piece_key, bytes):
    what a schedule reply would have given it (protocol/piecetoken.py)."""
    from dfly.protocol import piecetoken
    key = secret if isinstance(secret, bytes) else piecetoken.key_of(secret)
    token = piecetoken.mint(key, task_id, requester, time.time())
    return "?peer=" + requester, {piecetoken.HEADER: token}


def peer_secret_of(client) -> str:
    """The secret a dfly.Client's peer got from its (one) supernode."""
    return next(iter(client.secrets.to_json().values()))


def waiting_on(cond: threading.Condition) -> int:
    """Threads waiting on `cond` that no notify has woken yet (CPython's Condition keeps
    them in `_waiters`; a notify takes them out at once). Read while holding the
    condition's lock, it says whether an action woke them: a woken thread cannot wait
    again before the lock is let go."""
    return len(cond._waiters)
