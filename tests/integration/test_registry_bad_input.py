"""The mirror facing a broken upstream and hostile clients: errors pass through
as the upstream gave them and are not cached, a blob whose bytes do not match
its digest is never served, malformed requests are 4xx, and a client hanging up
mid-blob costs nothing but its own request."""
import socket

import pytest
from daemons import fetch, registry_blob, stats
from helpers import MiB, content, healthy, raw_exchange, refused_address, status_of

from dfly.protocol.address import parse_address
from dfly.protocol.pieces import MIN_PIECE_SIZE


def _address(running):
    return parse_address(running.address, 0)


@pytest.mark.time_limit(30)
def test_an_unreachable_upstream_is_a_502_and_the_daemon_keeps_serving(daemons):
    with refused_address() as (host, port):
        running = daemons.start(registry_mirror="http://%s:%d" % (host, port))
        assert fetch(running.address, "GET", "/v2/")[0] == 502
        status, _, body = fetch(running.address, "GET", "/v2/team/app/blobs/sha256:" + "a" * 64)
        assert status == 502 and b"UNAVAILABLE" in body
        assert fetch(running.address, "GET", "/v2/team/app/manifests/v1")[0] == 502
    assert healthy(_address(running))


@pytest.mark.time_limit(30)
def test_upstream_errors_pass_through_faithfully_and_are_not_cached(origin, supernode, daemons):
    data = content(3 * MiB, seed=11)
    name, path, digest = registry_blob(origin, data)
    running = daemons.start(supernode=[supernode.address], registry_mirror=origin.url("").rstrip("/"))
    origin.fault(name, status=503)
    status, _, _ = fetch(running.address, "GET", path)
    assert status == 503
    origin.heal(name)
    status, headers, body = fetch(running.address, "GET", path)
    assert status == 200 and body == data and headers["docker-content-digest"] == digest


@pytest.mark.time_limit(30)
def test_an_upstream_dying_mid_blob_is_an_error_and_a_later_request_succeeds(origin, supernode, daemons):
    data = content(6 * MiB, seed=12)
    name, path, digest = registry_blob(origin, data)
    running = daemons.start(supernode=[supernode.address], registry_mirror=origin.url("").rstrip("/"))
    origin.fault(name, die_after=MIN_PIECE_SIZE // 2)   # before the first piece is whole
    status, _, body = fetch(running.address, "GET", path)
    assert status == 502 and data[:4096] not in body
    assert stats(running)["cache_files"] == 0
    origin.heal(name)
    status, _, body = fetch(running.address, "GET", path)
    assert status == 200 and body == data


@pytest.mark.time_limit(30)
def test_a_blob_that_does_not_match_its_digest_is_never_served(origin, supernode, daemons):
    # One piece: nothing can stream before the whole-blob check, so the client gets a
    # clear 502 (a longer impostor is cut short mid-body: test_registry_streaming.py).
    wanted = content(MIN_PIECE_SIZE // 2, seed=13)
    impostor = content(MIN_PIECE_SIZE // 2, seed=14)
    _, path, _ = registry_blob(origin, wanted, served=impostor)
    with_p2p = daemons.start(supernode=[supernode.address], registry_mirror=origin.url("").rstrip("/"))
    alone = daemons.start(registry_mirror=origin.url("").rstrip("/"))
    for running in (with_p2p, alone, with_p2p):
        status, _, body = fetch(running.address, "GET", path)
        assert status == 502 and b"DIGEST_INVALID" in body
        assert impostor[:4096] not in body
        assert stats(running)["cache_files"] == 0


@pytest.mark.time_limit(30)
def test_malformed_registry_requests_are_client_errors(origin, daemons):
    running = daemons.start(registry_mirror=origin.url("").rstrip("/"))
    cases = {("GET", "/v2/Team/App/blobs/sha256:" + "a" * 64): (400, b"NAME_INVALID"),
             ("GET", "/v2/team/app/blobs/sha256:xyz"): (400, b"DIGEST_INVALID"),
             ("GET", "/v2/team/app/blobs/latest"): (400, b"DIGEST_INVALID"),
             ("GET", "/v2/team/app/manifests/-bad"): (400, b"TAG_INVALID"),
             ("GET", "/v2/team/../etc/blobs/sha256:" + "a" * 64): (400, b"NAME_INVALID"),
             ("GET", "/v2/team/app/elsewhere"): (404, b"NOT_FOUND"),
             ("PUT", "/v2/team/app/manifests/v1"): (405, b"UNSUPPORTED"),
             ("DELETE", "/v2/team/app/blobs/sha256:" + "a" * 64): (405, b"UNSUPPORTED")}
    for (method, path), (want, code) in cases.items():
        status, _, body = fetch(running.address, method, path)
        assert (status, code in body) == (want, True), (method, path, status, body[:200])
    assert status_of(raw_exchange(_address(running), b"GET /v2/ HTTP/1.1\r\nHost: x\r\n"
                                                     b"Content-Length: abc\r\n\r\n")) == 400
    assert status_of(raw_exchange(_address(running), b"GET /v2/ HTTP/1.1\r\nHost: x\r\n"
                                                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")) == 400
    assert healthy(_address(running))


@pytest.mark.time_limit(30)
def test_a_client_hanging_up_mid_blob_does_not_hurt_the_daemon(origin, supernode, daemons):
    data = content(16 * MiB, seed=15)
    _, path, _ = registry_blob(origin, data)
    running = daemons.start(supernode=[supernode.address], registry_mirror=origin.url("").rstrip("/"))
    for _ in range(3):
        with socket.create_connection(_address(running), timeout=10) as sock:
            sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    assert healthy(_address(running))
    status, _, body = fetch(running.address, "GET", path)
    assert status == 200 and body == data
