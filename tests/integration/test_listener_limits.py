"""Every listener (httpd.Server) bounds what one client can hold: a request must
arrive whole within a deadline (trickled header lines do not pin a thread), one
client host has a share of the connections, Content-Length is one plain number,
and bytes that are not HTTP get a plain error, not an HTML page."""
import socket
import time

import pytest
from helpers import raw_exchange, read_until_closed, status_of, wait_until

from dfly.httpd import Listener, Response, compile_routes, match_route

ROUTES = compile_routes([("GET", r"/healthz", "healthz"), ("POST", r"/echo", "echo")])


class EchoApp:
    def route(self, request):
        name, _ = match_route(ROUTES, request)
        if name == "echo":
            return Response.text("%d bytes\n" % len(request.body))
        return Response.text("ok\n")


@pytest.fixture
def make_listener():
    started = []

    def make(**kwargs):
        listener = Listener("test-http", ("127.0.0.1", 0), EchoApp(), **kwargs).start()
        started.append(listener)
        return listener

    yield make
    for listener in started:
        listener.stop()


def _connect(listener, source="127.0.0.1"):
    sock = socket.create_connection(listener.address, timeout=10, source_address=(source, 0))
    return sock


def _get(listener, source="127.0.0.1"):
    with _connect(listener, source) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return status_of(read_until_closed(sock))


@pytest.mark.time_limit(30)
def test_a_client_trickling_header_lines_is_cut_off_at_the_request_deadline(make_listener):
    listener = make_listener(request_deadline_s=1.0)
    began = time.monotonic()
    closed_after = None
    with _connect(listener) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        for i in range(80):   # one header line every 0.1 s, each well within the 30 s read timeout
            try:
                sock.sendall(b"X-Trickle-%d: a\r\n" % i)
            except OSError:
                closed_after = time.monotonic() - began
                break
            sock.settimeout(0.1)   # paces the trickle: a line, then 0.1 s watching for a close
            try:
                if sock.recv(1) == b"":
                    closed_after = time.monotonic() - began
                    break
            except socket.timeout:
                pass
            except OSError:
                closed_after = time.monotonic() - began
                break
    assert closed_after is not None, "the trickling client still held its connection after 8 s"
    assert closed_after < 5
    assert _get(listener) == 200   # and the listener is fine


def test_a_whole_request_within_the_deadline_is_answered_and_the_connection_kept(make_listener):
    listener = make_listener(request_deadline_s=1.0)
    with _connect(listener) as sock:
        for _ in range(3):   # keep-alive: each request gets its own deadline
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            reply = b""
            while b"5 bytes" not in reply:
                reply += sock.recv(4096)
            assert status_of(reply) == 200


@pytest.mark.time_limit(30)
def test_one_client_host_gets_its_share_of_connections_and_others_are_still_served(make_listener):
    listener = make_listener(max_connections_per_client=2)
    held = [_connect(listener, "127.0.0.2") for _ in range(2)]
    try:
        for sock in held:   # both are being served (a thread each), not queued
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(sock.recv(4096)) == 200
        assert _get(listener, "127.0.0.2") == 503
        assert _get(listener, "127.0.0.1") == 200
        held.pop().close()
        wait_until(lambda: _get(listener, "127.0.0.2") == 200, message="a slot freed")
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize("headers", [
    b"Content-Length: 1_0\r\n",
    b"Content-Length: +10\r\n",
    b"Content-Length: 0x0a\r\n",
    b"Content-Length: \xd9\xa1\xd9\xa0\r\n",   # Arabic-Indic "10": int() would take it
    b"Content-Length: 10\r\nContent-Length: 10\r\n",
    b"Content-Length: 10\r\nContent-Length: 0\r\n",
])
def test_a_content_length_that_is_not_one_plain_number_is_refused(make_listener, headers):
    listener = make_listener()
    request = b"POST /echo HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n0123456789"
    reply = raw_exchange(listener.address, request)
    assert status_of(reply) == 400, reply[:200]
    assert b"Content-Length" in reply


@pytest.mark.parametrize("payload", [b"hello\r\n\r\n", b"\x00\xff garbage\r\n\r\n",
                                     b"GET /healthz HTTP/1.x\r\n\r\n"])
def test_bytes_that_are_not_http_get_a_status_line_and_a_one_line_json_error(make_listener, payload):
    listener = make_listener()
    reply = raw_exchange(listener.address, payload)
    assert status_of(reply) == 400, reply[:200]
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"application/json" in head and b"<" not in body
    assert body.count(b"\n") == 1 and b'"kind": "BadRequest"' in body
