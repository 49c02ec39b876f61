"""How every dfly listener (httpd.Handler, and the daemon front built on it)
reads where a request ends, and how it answers what is not HTTP at all.

A Content-Length that Python's int() reads but HTTP does not ("1_0", "+5")
or one given twice, and a header line HTTP forbids (whitespace before the
colon, no colon, a folded line), are how a request is smuggled past a proxy
that reads it the other way: refused with 400. Errors the stdlib raises itself (a request
line that does not parse, an unknown method, HTTP/0.9) are answered like every
other error: a status line and a JSON body, never bare HTML."""
import json

import pytest
from helpers import raw_exchange, status_of

from dfly.httpd import Listener, Response


class EchoApp:
    """Answers how long the body it was given is."""

    def route(self, request):
        return Response.json({"body_bytes": len(request.body)})


@pytest.fixture
def echo():
    listener = Listener("test-echo", ("127.0.0.1", 0), EchoApp()).start()
    yield listener.address
    listener.stop()


@pytest.fixture
def front(daemons):
    host, port = daemons.start().address.rsplit(":", 1)
    return host, int(port)


def _post(length_headers: bytes, body: bytes = b"0123456789") -> bytes:
    return b"POST /echo HTTP/1.1\r\nHost: x\r\n" + length_headers + b"\r\n" + body


def _json_error(reply: bytes) -> dict:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    value = json.loads(body)
    assert value["error"] and value["kind"], value
    return value


BAD_LENGTHS = [
    ("underscore", b"Content-Length: 1_0\r\n"),
    ("plus sign", b"Content-Length: +10\r\n"),
    ("twice, different", b"Content-Length: 10\r\nContent-Length: 0\r\n"),
    ("twice, the same", b"Content-Length: 10\r\nContent-Length: 10\r\n"),
    ("empty", b"Content-Length: \r\n"),
    # a header line the stdlib cannot read ends its header block silently: the
    # Content-Length after it was lost and the body read as the next request
    ("space before the colon", b"Content-Length : 10\r\n"),
    ("a line without a colon", b"X-Junk\r\nContent-Length: 10\r\n"),
    ("a non-ASCII header name", b"X-\xc3\xa9: a\r\nContent-Length: 10\r\n"),
    ("a folded line", b"X-A: b\r\n Transfer-Encoding: chunked\r\nContent-Length: 10\r\n"),
    ("two Host headers", b"Host: y\r\nContent-Length: 10\r\n"),   # which one routes, checks?
]


@pytest.mark.parametrize("name,headers", BAD_LENGTHS, ids=[c[0] for c in BAD_LENGTHS])
def test_a_content_length_http_would_not_read_is_refused(echo, name, headers):
    reply = raw_exchange(echo, _post(headers))
    assert status_of(reply) == 400, reply[:200]
    assert _json_error(reply)["kind"] == "BadRequest"


def test_a_plain_content_length_is_read(echo):
    reply = raw_exchange(echo, _post(b"Content-Length: 10\r\nConnection: close\r\n"))
    assert status_of(reply) == 200
    assert json.loads(reply.partition(b"\r\n\r\n")[2]) == {"body_bytes": 10}


@pytest.mark.parametrize("name,headers", BAD_LENGTHS, ids=[c[0] for c in BAD_LENGTHS])
def test_the_daemon_front_refuses_them_too_even_when_proxying(front, origin, name, headers):
    target = b"http://127.0.0.1:%d/x" % origin.address[1]
    for path in (b"/v1/downloads", target):
        reply = raw_exchange(front, _post(headers).replace(b"/echo", path, 1))
        assert status_of(reply) == 400, (path, reply[:200])


NOT_HTTP = [
    ("binary garbage", b"\x00\xff\xfe garbage \x01\x02\r\n\r\n", 400),
    ("a TLS hello", bytes.fromhex("16030100a5010000a10303") + b"\x00" * 64 + b"\r\n\r\n", 400),
    ("HTTP/0.9", b"GET /healthz\r\n\r\n", 400),
    ("a bad version", b"GET /healthz HTTP/1.x\r\n\r\n", 400),
    ("an unknown method", b"BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    ("a request line too long", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
]


@pytest.mark.parametrize("name,payload,status", NOT_HTTP, ids=[c[0] for c in NOT_HTTP])
def test_what_is_not_http_gets_a_status_line_and_a_json_error(echo, front, name, payload, status):
    for address in (echo, front):
        reply = raw_exchange(address, payload)
        assert status_of(reply) == status, reply[:200]
        assert b"<html" not in reply.lower() and b"<!doctype" not in reply.lower()
        _json_error(reply)
