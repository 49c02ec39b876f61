"""The supernode's source policy on real sockets: an origin on a second loopback
address (127.0.0.2) denied directly, through a redirect from an allowed origin,
and through a name that only resolves to a denied address (judged after DNS);
failures to reach an origin do not tell a client which ports are open."""
import socket
import threading

import pytest
from helpers import MiB, content, sha256_file, wait_until
from helpers import redirector as redirecting
from origin import Origin

from dfly import errors
from dfly.protocol.messages import RegisterRequest, ScheduleRequest
from dfly.supernode.client import SupernodeClient


@pytest.fixture
def inner_origin(tmp_path):
    """An origin on 127.0.0.2: a host only the supernode should be able to reach."""
    server = Origin(str(tmp_path / "inner"), host="127.0.0.2")
    yield server
    server.stop()


@pytest.fixture
def redirector():
    with redirecting(keep_path=True) as server:
        yield server


def _denied_get(client, url, tmp_path):
    with pytest.raises(errors.SourceDenied) as caught:
        client.download(url, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    return str(caught.value)


def test_an_origin_on_a_denied_address_is_refused_at_registration(
        inner_origin, supernode_factory, client_factory, sn_client, tmp_path):
    inner_origin.add("blob", content(MiB, seed=1))
    supernode = supernode_factory(deny_source=["127.0.0.2/32"])
    client = client_factory([supernode.address])
    message = _denied_get(client, inner_origin.url("blob"), tmp_path)
    assert "source policy" in message
    assert inner_origin.requests("blob") == 0
    sn = SupernodeClient(supernode.address, timeout_s=5)
    try:
        assert sn.listing()["sources_denied"] == 1   # the counted event
    finally:
        sn.close()


def test_a_redirect_from_an_allowed_origin_to_a_denied_address_is_refused(
        inner_origin, redirector, supernode_factory, client_factory, tmp_path):
    inner_origin.add("blob", content(MiB, seed=2))
    redirector.target = "http://127.0.0.2:%d" % inner_origin.address[1]
    supernode = supernode_factory(deny_source=["127.0.0.2/32"])
    client = client_factory([supernode.address])
    message = _denied_get(client, "http://127.0.0.1:%d/blob" % redirector.server_address[1], tmp_path)
    assert "redirect" in message and "source policy" in message
    assert inner_origin.requests("blob") == 0


def test_the_same_origin_and_redirect_are_fetched_when_not_denied(
        inner_origin, redirector, supernode, client_factory, tmp_path):
    src = inner_origin.add("blob", content(MiB, seed=2))
    redirector.target = "http://127.0.0.2:%d" % inner_origin.address[1]
    client = client_factory([supernode.address])
    result = client.download("http://127.0.0.1:%d/blob" % redirector.server_address[1],
                             str(tmp_path / "out"))
    assert sha256_file(str(tmp_path / "out")) == src.sha256
    # The supernode followed the redirect under its policy: the client never went to the source.
    assert (result.via, result.bytes_from_source, result.bytes_from_supernode) == ("p2p", 0, src.size)


def test_a_name_resolving_to_a_denied_address_is_refused_after_dns_before_sending(
        origin, supernode_factory, client_factory, tmp_path):
    origin.add("blob", content(MiB, seed=3))
    # "localhost" passes every name rule; only the address it reaches is denied.
    supernode = supernode_factory(deny_source=["127.0.0.0/8", "::1"])
    client = client_factory([supernode.address])
    message = _denied_get(client, "http://localhost:%d/blob" % origin.address[1], tmp_path)
    assert "127.0.0.1" not in message and "::1" not in message   # nothing of internal DNS
    assert origin.requests("blob") == 0


def test_a_redirect_to_ftp_is_refused_as_a_scheme_dfly_does_not_fetch(
        redirector, supernode, client_factory, tmp_path):
    redirector.target = "ftp://127.0.0.1:21"
    client = client_factory([supernode.address])
    message = _denied_get(client, "http://127.0.0.1:%d/blob" % redirector.server_address[1], tmp_path)
    assert "ftp" in message


def test_a_closed_port_and_a_non_http_port_fail_alike_without_saying_which(
        supernode, sn_client):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()   # nothing listens there now
    talker = socket.socket()
    talker.bind(("127.0.0.1", 0))
    talker.listen(4)
    stop = threading.Event()

    def speak_ssh():
        talker.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = talker.accept()
            except OSError:
                continue
            conn.sendall(b"SSH-2.0-OpenSSH_9.0\r\n")
            conn.close()
    thread = threading.Thread(target=speak_ssh, name="fake-ssh", daemon=True)
    thread.start()
    try:
        errors_seen = []
        for i, port in enumerate((closed_port, talker.getsockname()[1])):
            request = RegisterRequest(url="http://127.0.0.1:%d/x" % port, peer_id="probe%d" % i,
                                      peer_port=1)
            task_id, state = sn_client.register(request)
            errors_seen.append(wait_until(lambda tid=task_id: sn_client.task(tid).get("error"), 10))
    finally:
        stop.set()
        thread.join(5)
        talker.close()
    for text in errors_seen:   # neither the OS's reason nor what answered
        assert "errno" not in text.lower() and "ssh" not in text.lower()
        assert "Connection refused" not in text and "BadStatusLine" not in text
    assert errors_seen[0].split("/x", 1)[1] == errors_seen[1].split("/x", 1)[1]   # the same words


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_not_a_byte_reaches_a_denied_address_not_even_a_tls_hello(scheme, supernode_factory, sn_client):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    received, stop = [], threading.Event()

    def record():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    received.append(conn.recv(100))
                except OSError:
                    received.append(b"")
    thread = threading.Thread(target=record, name="recorder", daemon=True)
    thread.start()
    supernode = supernode_factory(deny_source=["127.0.0.0/8", "::1"])
    client = SupernodeClient(supernode.address, timeout_s=10)
    try:
        url = "%s://localhost:%d/x" % (scheme, listener.getsockname()[1])
        tid, _ = client.register(RegisterRequest(url=url, peer_id="p", peer_port=9))
        wait_until(lambda: client.task(tid)["state"] == "failed", message="denied")
        assert client.schedule(tid, ScheduleRequest("p", want=0)).error_kind == "SourceDenied"
    finally:
        client.close()
        stop.set()
        thread.join(5)
        listener.close()
    assert all(data == b"" for data in received), received   # connected, judged, closed
