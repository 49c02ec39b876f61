"""`dfly daemon` as an HTTP proxy: ordered rules send matching GETs through
P2P, everything else passes through as the server answered (status, headers,
streamed bodies of unknown length, request bodies), and CONNECT is tunnelled."""
import http.client
import os
import socket

import pytest
from daemons import stats
from helpers import MiB, QuietHandler, Serving, content, healthy, refused_address, send_body

from dfly.protocol.address import parse_address

RULES = ["direct \\.json$", "p2p /big/"]


@pytest.fixture
def echo():
    """A server that echoes POST bodies and answers GETs with a body of no stated
    length (HTTP/1.0, ended by closing), so the proxy must stream it."""
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.0"

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            send_body(self, body, 201, {"X-Echo": self.headers.get("X-Test", "")})

        def do_GET(self):
            self.send_response(200)
            self.send_header("Set-Cookie", "a=1")
            self.send_header("Set-Cookie", "b=2")
            self.end_headers()
            for i in range(64):
                self.wfile.write(b"%05d" % i * 200)

    with Serving(Handler, "test-echo") as serving:
        yield serving.server.server_address[:2]


def _gets(origin, name: str) -> int:
    return len([s for s in origin.served(name) if s.method == "GET"])


def _via(proxy_address: str, method: str, url: str, headers=None, body=None):
    host, port = parse_address(proxy_address, 0)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, url, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response, response.read()
    finally:
        conn.close()


@pytest.mark.time_limit(30)
def test_matching_gets_go_p2p_and_the_origin_serves_the_file_once(origin, supernode, daemons):
    os.makedirs(os.path.join(origin.root, "big"), exist_ok=True)
    big = origin.add("big/file.bin", content(12 * MiB, seed=21))
    first = daemons.start(supernode=[supernode.address], proxy_rule=RULES)
    second = daemons.start(supernode=[supernode.address], proxy_rule=RULES)
    for running in (first, second):
        status, response, body = _via(running.address, "GET", big.url)
        assert status == 200 and body == big.data
        assert response.getheader("X-Dfly") == "p2p"
    assert _gets(origin, "big/file.bin") == 1
    assert stats(second)["bytes_from_peers"] == big.size
    status, response, body = _via(second.address, "GET", big.url, {"Range": "bytes=-100"})
    assert status == 206 and body == big.data[-100:]
    assert _gets(origin, "big/file.bin") == 1


@pytest.mark.time_limit(30)
def test_a_p2p_answer_carries_the_origins_content_headers(origin, supernode, daemons):
    os.makedirs(os.path.join(origin.root, "big"), exist_ok=True)
    described = {"Content-Type": "text/csv; charset=utf-8",
                 "Content-Disposition": 'attachment; filename="table.csv"'}
    table = origin.add("big/table.csv", content(5 * MiB, seed=25), content_headers=described)
    running = daemons.start(supernode=[supernode.address], proxy_rule=RULES)
    for _ in range(2):   # downloaded through P2P, then from the cache
        status, response, body = _via(running.address, "GET", table.url)
        assert status == 200 and body == table.data and response.getheader("X-Dfly") == "p2p"
        for header, value in described.items():
            assert response.getheader(header) == value
        assert response.getheader("ETag") is None   # the cached copy may predate the origin's
    assert _gets(origin, "big/table.csv") == 1


@pytest.mark.time_limit(30)
def test_unmatched_and_direct_requests_pass_through_unchanged(origin, daemons):
    meta = origin.add("meta.json", b'{"k": 1}')
    running = daemons.start(proxy_rule=RULES)
    status, response, body = _via(running.address, "GET", meta.url)
    assert status == 200 and body == meta.data
    assert response.getheader("ETag") == meta.etag
    status, response, _ = _via(running.address, "GET", meta.url, {"If-None-Match": meta.etag})
    assert status == 304
    status, _, _ = _via(running.address, "GET", origin.url("missing.bin"))
    assert status == 404
    origin.add("other.bin", content(MiB, seed=22))
    status, _, body = _via(running.address, "GET", origin.url("other.bin"), {"Range": "bytes=10-19"})
    assert status == 206 and body == content(MiB, seed=22)[10:20]
    assert stats(running)["downloads"] == 0


@pytest.mark.time_limit(30)
def test_a_p2p_url_the_origin_refuses_gets_the_origins_own_answer(origin, supernode, daemons):
    running = daemons.start(supernode=[supernode.address], proxy_rule=RULES)
    status, _, _ = _via(running.address, "GET", origin.url("big/absent.bin"))
    assert status == 404
    assert stats(running)["cache_files"] == 0


@pytest.mark.time_limit(30)
def test_request_bodies_and_replies_of_unknown_length_stream_through(echo, daemons):
    running = daemons.start(proxy_rule=RULES)
    url = "http://%s:%d/post" % echo
    payload = content(3 * MiB, seed=23)
    status, response, body = _via(running.address, "POST", url, {"X-Test": "yes"}, payload)
    assert status == 201 and body == payload and response.getheader("X-Echo") == "yes"
    status, response, body = _via(running.address, "GET", url)
    assert status == 200 and body == b"".join(b"%05d" % i * 200 for i in range(64))
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.msg.get_all("Set-Cookie") == ["a=1", "b=2"]


@pytest.mark.time_limit(30)
def test_connect_tunnels_bytes_both_ways_and_a_dead_target_is_a_502(origin, daemons):
    file = origin.add("tunnelled.bin", content(2 * MiB, seed=24))
    running = daemons.start(proxy_rule=RULES)
    with socket.create_connection(parse_address(running.address, 0), timeout=10) as sock:
        target = "127.0.0.1:%d" % origin.address[1]
        request = ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode()
        inner = ("GET /tunnelled.bin HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % target).encode()
        sock.sendall(request + inner)   # a client may send before it sees the 200
        reply = b""
        while True:
            block = sock.recv(1 << 16)
            if not block:
                break
            reply += block
    head, _, rest = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    inner_head, _, inner_body = rest.partition(b"\r\n\r\n")
    assert inner_head.startswith(b"HTTP/1.1 200") and inner_body == file.data
    with refused_address() as (host, port):
        status, _, _ = _via(running.address, "CONNECT", "%s:%d" % (host, port))
        assert status == 502
    for bad in ("no-port", "h:99999", "/path"):
        assert _via(running.address, "CONNECT", bad)[0] == 400
    assert healthy(parse_address(running.address, 0))
