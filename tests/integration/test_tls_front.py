"""The daemon's front port with --tls-front, all of what it serves: the
registry mirror, the HTTP proxy (absolute-URI GETs) and CONNECT tunnels,
dialled as a client with a cluster certificate would (mutual TLS)."""
import http.client
import os
import socket

import pytest
from certs import Certs
from daemons import registry_blob
from helpers import MiB, content

from dfly.protocol.address import parse_address
from dfly.tls import TLS, TLSOptions


@pytest.fixture
def certs(tmp_path):
    return Certs(str(tmp_path / "certs"))


@pytest.fixture
def front(origin, supernode_factory, daemons, certs):
    """A daemon whose front speaks mutual TLS, as its whole cluster does; (its
    address, a client TLS context)."""
    os.makedirs(os.path.join(origin.root, "big"), exist_ok=True)
    supernode = supernode_factory(**certs.mtls("supernode"))
    running = daemons.start(supernode=[supernode.address], tls_front=True,
                            registry_mirror=origin.url("").rstrip("/"), proxy_rule=["p2p /big/"],
                            **certs.mtls("daemon"))
    context = TLS(TLSOptions(**certs.mtls("client"))).client_context()
    return parse_address(running.address, 0), context


def _get(front, target, headers=None):
    (host, port), context = front
    conn = http.client.HTTPSConnection(host, port, timeout=20, context=context)
    try:
        conn.request("GET", target, headers=headers or {})
        response = conn.getresponse()
        return response.status, response, response.read()
    finally:
        conn.close()


@pytest.mark.time_limit(60)
def test_the_registry_mirror_serves_a_blob_over_a_tls_front(origin, front):
    data = content(3 * MiB + 5, seed=41)
    _, path, _ = registry_blob(origin, data)
    status, _, body = _get(front, path)
    assert status == 200 and body == data, body[:300]


@pytest.mark.time_limit(60)
def test_the_proxy_serves_a_get_over_a_tls_front_through_p2p_and_direct(origin, front):
    big = origin.add("big/f.bin", content(2 * MiB, seed=42))
    small = origin.add("small.txt", b"plain\n")
    status, response, body = _get(front, big.url)
    assert status == 200 and body == big.data and response.getheader("X-Dfly") == "p2p"
    status, _, body = _get(front, small.url)
    assert status == 200 and body == small.data


@pytest.mark.time_limit(60)
def test_connect_tunnels_through_a_tls_front(origin, front):
    file = origin.add("tunnelled.bin", content(MiB, seed=43))
    (host, port), context = front
    target = "127.0.0.1:%d" % origin.address[1]
    with socket.create_connection((host, port), timeout=20) as raw:
        with context.wrap_socket(raw, server_hostname=host) as sock:
            request = ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode()
            inner = ("GET /tunnelled.bin HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                     % target).encode()
            sock.sendall(request + inner)
            reply = b""
            for _ in range(10000):   # bounded: the tunnel ends when the origin closes
                block = sock.recv(1 << 16)
                if not block:
                    break
                reply += block
    head, _, rest = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    inner_head, _, inner_body = rest.partition(b"\r\n\r\n")
    assert inner_head.startswith(b"HTTP/1.1 200") and inner_body == file.data
