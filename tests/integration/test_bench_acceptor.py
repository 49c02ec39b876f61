"""`dfly bench`'s shared accept loop: many uploaders' listening sockets, one thread."""
import http.client
import socket
import threading

import pytest

from dfly.httpd import Acceptor, Server
from dfly.peer.uploader import UploaderApp


def get_healthz(port: int) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        reply = conn.getresponse()
        assert reply.status == 200
        return reply.read()
    finally:
        conn.close()


@pytest.fixture
def acceptor():
    acceptor = Acceptor("test-acceptor").start()
    yield acceptor
    acceptor.stop()


@pytest.fixture
def servers():
    made = [Server(("127.0.0.1", 0), UploaderApp(), max_connections_per_client=0) for _ in range(3)]
    yield made
    for server in made:
        server.server_close()


def test_one_acceptor_serves_the_uploaders_of_many_peers(acceptor, servers):
    for server in servers:
        acceptor.add(server)

    for server in servers:
        for _ in range(2):   # and again, on a new connection
            assert get_healthz(server.port) == b"ok\n"
    assert [t.name for t in threading.enumerate()].count("test-acceptor") == 1


def test_a_removed_server_is_closed_and_the_others_still_answer(acceptor, servers):
    for server in servers:
        acceptor.add(server)
    gone, kept = servers[0], servers[1]
    port = gone.port

    acceptor.remove(gone)
    gone.server_close()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert get_healthz(kept.port) == b"ok\n"
    acceptor.remove(gone)   # twice: nothing


def test_stop_wakes_the_acceptor_and_ends_its_thread(servers):
    acceptor = Acceptor("test-acceptor-stop").start()
    acceptor.add(servers[0])
    assert get_healthz(servers[0].port) == b"ok\n"

    acceptor.stop(timeout_s=10)   # its loop waits on epoll without a timeout: only the wake-up ends it

    assert "test-acceptor-stop" not in [t.name for t in threading.enumerate()]
