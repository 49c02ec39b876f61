"""A body whose sender counts it as an upload slot (the supernode's pieces) is
watched while it goes out: a client that reads slowly gets its slot given back
after SLOW_SEND_S (the body still goes out), one that reads nothing is cut off
after STALLED_SEND_S (longer beside slow streams: stall_limit), and a healthy
one is told apart from both. Slow is
against the others: readers that share the sender's link, each at the same
pace, are not slow however long their bodies take (the supernode's fan-out
feeds 16 peers at once), and one far behind readers still going is. A body
sent unwatched (rate-limited) still tells its sender when it breaks."""
import socket
import struct
import threading
import time

import pytest
from helpers import MiB, wait_until

from dfly.httpd import SLOW_SEND_S, STALLED_SEND_S, FileSlice, Listener, Response
from dfly.protocol.ratelimit import TokenBucket

BODY = 32 * MiB   # far more than the socket buffers of both ends hold


class Watched:
    """An app serving one file slice, noting when its sender was told what."""

    def __init__(self, path):
        self.path = path
        self.sent_at = None
        self.slow = None
        self.failed_at = None

    def route(self, request):
        return Response(200, FileSlice(self.path, 0, BODY, on_sent=self._sent, on_failed=self._failed))

    def _sent(self, slow=False):
        self.sent_at, self.slow = time.monotonic(), slow

    def _failed(self):
        self.failed_at = time.monotonic()


def _serving(tmp_path, app_class):
    """A listener serving a BODY-long file with `app_class`: (app, address, listener)."""
    path = str(tmp_path / "body")
    with open(path, "wb") as f:
        f.truncate(BODY)
    app = app_class(path)
    listener = Listener("watched", ("127.0.0.1", 0), app).start()
    return app, listener.address, listener


@pytest.fixture
def served(tmp_path):
    app, address, listener = _serving(tmp_path, Watched)
    yield app, address
    listener.stop()


def _ask(address, rcvbuf=None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(address)
    sock.sendall(b"GET /body HTTP/1.1\r\nHost: t\r\n\r\n")
    return sock, time.monotonic()


@pytest.mark.time_limit(60)
def test_a_client_that_reads_nothing_frees_the_slot_then_is_cut_off(served):
    app, address = served
    sock, asked = _ask(address, rcvbuf=64 * 1024)
    try:
        wait_until(lambda: app.sent_at, timeout=SLOW_SEND_S + 10, message="slot given back")
        assert app.sent_at - asked >= SLOW_SEND_S - 0.5 and app.slow is True
        wait_until(lambda: app.failed_at, timeout=SLOW_SEND_S + STALLED_SEND_S + 20,
                   message="stalled body cut off")
        assert app.failed_at - asked >= STALLED_SEND_S - 0.5
    finally:
        sock.close()


@pytest.mark.time_limit(30)
def test_a_client_that_reads_is_told_sent_and_never_failed(served):
    app, address = served
    sock, _ = _ask(address)
    got = bytearray()
    done = threading.Event()

    def read():
        sock.settimeout(20)
        while len(got) < BODY:   # headers and the body
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got.extend(chunk)
        done.set()
    reader = threading.Thread(target=read, name="test-reader", daemon=True)
    reader.start()
    try:
        wait_until(lambda: app.sent_at, timeout=20, message="told sent")
        assert done.wait(20)
        assert len(got) >= BODY
        assert app.failed_at is None and app.slow is False
    finally:
        sock.close()
        reader.join(5)


class Throttled(Watched):
    """The same, under an upload rate limit: such a body is not watched (sent in
    rate-limited steps), yet its sender must still hear when it breaks."""

    def route(self, request):
        return Response(200, FileSlice(self.path, 0, BODY, throttle=TokenBucket(4 * MiB, time.monotonic()),
                                       on_sent=self._sent, on_failed=self._failed))


@pytest.mark.time_limit(30)
def test_an_unwatched_body_whose_client_went_away_tells_its_sender(tmp_path):
    app, address, listener = _serving(tmp_path, Throttled)
    try:
        sock, _ = _ask(address)
        sock.settimeout(10)
        assert sock.recv(1024)   # the headers: the body is on its way
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()   # a reset: the next step fails
        wait_until(lambda: app.failed_at, timeout=20, message="told failed")
        assert app.sent_at is None
    finally:
        listener.stop()


class Readers:
    """An app serving one file slice to each request (its first `size` bytes, a
    query's number when given), noting for each body whether it was told slow
    (keyed by the request's path)."""

    def __init__(self, path):
        self.path = path
        self.told = {}
        self.failed = set()   # paths whose body was cut (or broke)

    def route(self, request):
        name = request.path
        size = int(request.query.get("size", [BODY])[0])

        def sent(slow=False):
            self.told[name] = slow
        return Response(200, FileSlice(self.path, 0, size, on_sent=sent,
                                       on_failed=lambda: self.failed.add(name)))


class PacedReader:
    """A client reading its body at `rate` bytes a second (a slow link), until stopped."""

    def __init__(self, address, name, rate, size=BODY):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.sock.connect(address)
        self.sock.sendall(b"GET /%s?size=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (name.encode(), size))
        self.rate, self.size, self.stop = rate, size, threading.Event()
        self.thread = threading.Thread(target=self._read, name="test-paced-reader", daemon=True)
        self.thread.start()

    def _read(self):
        began, got = time.monotonic(), 0
        self.sock.settimeout(5)
        while not self.stop.is_set() and got < self.size:
            due = got / self.rate - (time.monotonic() - began)
            if due > 0 and self.stop.wait(due):   # ahead of its pace: this is its link
                break
            try:
                chunk = self.sock.recv(16 * 1024)
            except OSError:
                break
            if not chunk:
                break
            got += len(chunk)

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def readers(tmp_path):
    app, address, listener = _serving(tmp_path, Readers)
    yield app, address
    listener.stop()


@pytest.mark.time_limit(40)
@pytest.mark.parametrize("size,rate", [(BODY, 512 * 1024), (MiB, 128 * 1024)])
def test_readers_sharing_the_link_at_one_pace_are_not_slow_however_long_they_take(
        readers, size, rate):
    """A body of BODY is still being handed to the socket at SLOW_SEND_S; one of
    1 MiB (a piece) sits in the socket's buffer by then, and is waited for there."""
    app, address = readers
    clients = [PacedReader(address, "r%d" % i, rate, size) for i in range(4)]
    try:
        began = time.monotonic()
        # Past SLOW_SEND_S with each body far from its end (8 s at this pace or more):
        # before, the clock alone made each of them a slow reader here.
        wait_until(lambda: time.monotonic() - began > SLOW_SEND_S + 1.5, timeout=SLOW_SEND_S + 5)
        assert app.told == {}
    finally:
        for client in clients:
            client.close()


@pytest.mark.time_limit(40)
def test_a_reader_far_behind_the_others_is_slow(readers):
    app, address = readers
    clients = [PacedReader(address, "fast%d" % i, 2 * MiB) for i in range(3)]
    clients.append(PacedReader(address, "behind", 64 * 1024))
    try:
        wait_until(lambda: "/behind" in app.told, timeout=SLOW_SEND_S + 10, message="told slow")
        assert app.told["/behind"] is True
        assert not any(name.startswith("/fast") for name in app.told)   # still going, not slow
    finally:
        for client in clients:
            client.close()


@pytest.mark.time_limit(60)
def test_a_still_reader_beside_slow_streams_is_not_cut_at_the_plain_stall_limit(readers):
    # Three streams at 20 KB/s (a slow link's fan-out): TCP backing off there stills
    # a healthy stream past STALLED_SEND_S, so the limit is twice what their pace
    # takes for 256 KiB (26 s). Cut at 10 s, such a piece was sent again.
    app, address = readers
    clients = [PacedReader(address, "paced%d" % i, 20 * 1024) for i in range(3)]
    still, _ = _ask(address, rcvbuf=64 * 1024)   # reads nothing
    try:
        began = time.monotonic()
        wait_until(lambda: time.monotonic() - began > STALLED_SEND_S + 3, timeout=STALLED_SEND_S + 10)
        assert app.failed == set()
    finally:
        still.close()
        for client in clients:
            client.close()
