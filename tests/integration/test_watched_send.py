"""A body whose sender counts it as an upload slot (the supernode's pieces) is
watched while it goes out: a client that reads slowly gets its slot given back
after SLOW_SEND_S (the body still goes out), one that reads nothing is cut off
after STALLED_SEND_S, and a healthy one is told apart from both."""
import socket
import threading
import time

import pytest
from helpers import MiB, wait_until

from dfly.httpd import SLOW_SEND_S, STALLED_SEND_S, FileSlice, Listener, Response

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


@pytest.fixture
def served(tmp_path):
    path = str(tmp_path / "body")
    with open(path, "wb") as f:
        f.truncate(BODY)
    app = Watched(path)
    listener = Listener("watched", ("127.0.0.1", 0), app).start()
    yield app, listener.address
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
