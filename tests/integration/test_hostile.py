"""Hostile HTTP against the supernode and a peer's uploader: every request gets
a 4xx (or, for bytes that are not HTTP, a closed connection), nothing gets a
5xx, and the listener still answers /healthz afterwards."""
import json

import pytest
from helpers import (
    MiB,
    content,
    healthy,
    http_status,
    peer_secret_of,
    piece_access,
    raw_exchange,
    sha256_file,
    status_of,
)

from dfly.errors import BadRequest
from dfly.httpd import MAX_BODY_BYTES
from dfly.protocol.messages import RegisterRequest, ScheduleRequest
from dfly.protocol.pieces import piece_count, piece_size_for

TID = "0" * 64   # well formed, known to nobody


def _register_body(url, **peer):
    return json.dumps({"url": url, "peer": dict({"id": "p1", "port": 1}, **peer)})


def _raw_cases(real_tid):
    """(name, raw request bytes, allowed statuses); None means "closed without answering"."""
    four = set(range(400, 500))
    quiet_or_4xx = four | {None}
    big = b"a" * 100_000
    return [
        ("garbage", b"\x00\xff\xfe\xfd garbage \x01\x02\r\n\r\n", quiet_or_4xx),
        ("tls client hello", bytes.fromhex("16030100a5010000a10303") + b"\x00" * 64, quiet_or_4xx),
        ("only newlines", b"\r\n" * 1000, quiet_or_4xx),
        ("100 KB header line", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + big + b"\r\n\r\n", four),
        ("100 KB request line", b"GET /" + big + b" HTTP/1.1\r\nHost: x\r\n\r\n", four),
        ("thousands of headers", b"GET /healthz HTTP/1.1\r\n" + b"X-A: b\r\n" * 5000 + b"\r\n", four),
        # the stdlib answers these before it knows the version, so without a status line
        ("unsupported version", b"GET /healthz HTTP/9.9\r\n\r\n", quiet_or_4xx | {505}),
        ("malformed version", b"GET /healthz HTTP/1.x\r\n\r\n", quiet_or_4xx),
        ("superscript digit as piece number",
         b"GET /v1/tasks/" + real_tid.encode() + b"/pieces/\xb2 HTTP/1.1\r\nHost: x\r\n\r\n", four),
    ]


def _request_cases(real_tid):
    """(name, method, path, body, headers, allowed statuses) for well-formed HTTP."""
    four = set(range(400, 500))
    unknown_method = {405, 501}   # 501 is the RFC 9110 answer to a method the server does not know
    piece = "/v1/tasks/%s/pieces/" % real_tid
    return [
        ("dot-dot in the path", "GET", "/v1/tasks/../../etc/passwd/pieces/0", b"", {}, four),
        ("encoded dot-dot task id", "GET", "/v1/tasks/%2e%2e%2f%2e%2e%2fetc%2fpasswd/pieces/0",
         b"", {}, four),
        ("encoded dot-dot piece", "GET", piece + "..%2f..%2fetc%2fpasswd", b"", {}, four),
        ("absolute path task id", "GET", "/v1/tasks//etc/passwd/pieces/0", b"", {}, four),
        ("upper-case hex task id", "GET", "/v1/tasks/%s/pieces/0" % real_tid.upper(), b"", {}, four),
        ("unknown task", "GET", "/v1/tasks/%s/pieces/0" % TID, b"", {}, four),
        ("negative piece", "GET", piece + "-1", b"", {}, four),
        ("huge piece", "GET", piece + "9" * 40, b"", {}, four),
        ("piece past the end", "GET", piece + "999999999999", b"", {}, four),
        ("float piece", "GET", piece + "1e3", b"", {}, four),
        ("encoded superscript piece", "GET", piece + "%C2%B2", b"", {}, four),
        ("no such endpoint", "GET", "/etc/passwd", b"", {}, four),
        ("huge Content-Length", "POST", "/v1/tasks", b"{}", {"Content-Length": str(10 ** 15)}, four),
        ("negative Content-Length", "POST", "/v1/tasks", b"{}", {"Content-Length": "-5"}, four),
        ("junk Content-Length", "POST", "/v1/tasks", b"{}", {"Content-Length": "lots"}, four),
        ("body over the limit", "POST", "/v1/tasks", b"x" * (MAX_BODY_BYTES + 1), {}, four),
        ("chunked body", "POST", "/v1/tasks", b"2\r\n{}\r\n0\r\n\r\n",
         {"Transfer-Encoding": "chunked"}, four),
        ("wrong method PUT", "PUT", piece + "0", b"", {}, {405}),
        ("wrong method DELETE", "DELETE", "/healthz", b"", {}, {405}),
        ("wrong method POST", "POST", piece + "0", b"{}", {}, {405}),
        ("unknown method PATCH", "PATCH", "/healthz", b"", {}, unknown_method),
        ("unknown method BREW", "BREW", "/healthz", b"", {}, unknown_method),
    ]


def _supernode_body_cases(real_tid, url):
    """`url`: a source on the test origin, so a case wrongly accepted fetches nothing elsewhere."""
    four = set(range(400, 500))
    schedule = "/v1/tasks/%s/schedule" % real_tid
    return [
        ("not JSON", "/v1/tasks", b"not json at all"),
        ("not UTF-8", "/v1/tasks", b"\xff\xfe\xfa"),
        ("JSON array", "/v1/tasks", b"[1, 2, 3]"),
        ("deeply nested JSON", "/v1/tasks", b"[" * 200_000),
        ("url of the wrong type", "/v1/tasks", json.dumps({"url": 5}).encode()),
        ("file URL", "/v1/tasks", json.dumps({"url": "file:///etc/passwd",
                                              "peer": {"id": "p1", "port": 1}}).encode()),
        ("peer id with a slash", "/v1/tasks", _register_body(url, id="../../x").encode()),
        ("peer port zero", "/v1/tasks", _register_body(url, port=0).encode()),
        ("peer port huge", "/v1/tasks", _register_body(url, port=10 ** 9).encode()),
        ("peer port a string", "/v1/tasks", _register_body(url, port="80").encode()),
        ("bad digest", "/v1/tasks", json.dumps({"url": url, "digest": "sha256:zz",
                                               "peer": {"id": "p1", "port": 1}}).encode()),
        ("CRLF in a header", "/v1/tasks", json.dumps({"url": url, "headers": {"X": "a\r\nB: c"},
                                                      "peer": {"id": "p1", "port": 1}}).encode()),
        ("schedule: unknown task", "/v1/tasks/%s/schedule" % TID, b'{"peer_id": "hostile"}'),
        ("schedule: not JSON", schedule, b"{{{"),
        ("schedule: unknown peer", schedule, b'{"peer_id": "nobody"}'),
        ("schedule: negative want", schedule, b'{"peer_id": "hostile", "want": -1}'),
        ("schedule: huge want", schedule, b'{"peer_id": "hostile", "want": 1000000000}'),
        ("schedule: infinite wait", schedule, b'{"peer_id": "hostile", "wait_s": Infinity}'),
        ("schedule: NaN wait", schedule, b'{"peer_id": "hostile", "wait_s": NaN}'),
        ("schedule: string done", schedule, b'{"peer_id": "hostile", "done": ["a"]}'),
        ("schedule: negative done", schedule, b'{"peer_id": "hostile", "done": [-1]}'),
        ("schedule: failure without holder", schedule, b'{"peer_id": "hostile", "failed": [{"num": 1}]}'),
    ], four


def _check_all(address, real_tid, extra_posts=((), set())):
    """Run every case; return "case: got X" lines for the ones answered wrongly."""
    wrong = []
    for name, payload, allowed in _raw_cases(real_tid):
        status = status_of(raw_exchange(address, payload))
        if status not in allowed:
            wrong.append("%s: got %s" % (name, status))
        if not healthy(address):
            wrong.append("%s: /healthz stopped answering" % name)
    for name, method, path, body, headers, allowed in _request_cases(real_tid):
        status = http_status(address, method, path, body, headers)
        if status not in allowed:
            wrong.append("%s: got %s" % (name, status))
        if not healthy(address):
            wrong.append("%s: /healthz stopped answering" % name)
    cases, allowed = extra_posts
    for name, path, body in cases:
        status = http_status(address, "POST", path, body, {"Content-Type": "application/json"})
        if status not in allowed:
            wrong.append("%s: got %s" % (name, status))
        if not healthy(address):
            wrong.append("%s: /healthz stopped answering" % name)
    return wrong


def _address(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


@pytest.mark.time_limit(30)
def test_supernode_answers_hostile_requests_with_4xx_and_stays_healthy(origin, supernode, sn_client):
    src = origin.add("target.bin", content(MiB, seed=3))
    tid, _ = sn_client.register(RegisterRequest(url=src.url, peer_id="hostile", peer_port=9,
                                                peer_host="127.0.0.1"))
    wrong = _check_all(_address(supernode.address), tid,
                       _supernode_body_cases(tid, origin.url("never-fetched.bin")))
    assert wrong == [], "\n".join(wrong)


@pytest.mark.time_limit(30)
def test_uploader_answers_hostile_requests_with_4xx_and_still_serves_pieces(
        origin, supernode, client_factory, downloads):
    src = origin.add("seeded.bin", content(6 * MiB, seed=4))
    seeder = client_factory([supernode.address], seed_for_s=60)
    result = seeder.download(src.url, str(downloads / "seeded.bin"))
    address = seeder.uploader_address
    assert address is not None

    wrong = _check_all(address, result.task_id)
    assert wrong == [], "\n".join(wrong)
    query, token = piece_access(peer_secret_of(seeder), result.task_id)
    assert http_status(address, "GET", "/v1/tasks/%s/pieces/0%s" % (result.task_id, query), b"", token) == 200
    pieces = piece_count(result.length, piece_size_for(result.length))
    assert http_status(address, "GET", "/v1/tasks/%s/pieces/%d%s" % (result.task_id, pieces - 1, query),
                       b"", token) == 200
    assert http_status(address, "GET", "/v1/tasks/%s/pieces/%d%s" % (result.task_id, pieces, query),
                       b"", token) == 404


@pytest.mark.time_limit(30)
def test_a_peer_claiming_pieces_outside_the_file_cannot_break_other_downloads(
        origin, supernode, sn_client, client_factory, downloads):
    src = origin.add("claimed.bin", content(6 * MiB, seed=5))
    tid, _ = sn_client.register(RegisterRequest(url=src.url, peer_id="hostile", peer_port=9,
                                                peer_host="127.0.0.1"))
    try:
        sn_client.schedule(tid, ScheduleRequest("hostile", done=[7, 10 ** 12], want=0))
    except BadRequest:   # refusing the claim outright is fine too
        pass

    result = client_factory([supernode.address]).download(src.url, str(downloads / "claimed.bin"))
    assert sha256_file(str(downloads / "claimed.bin")) == src.sha256
    assert result.length == src.size
    assert healthy(_address(supernode.address))
