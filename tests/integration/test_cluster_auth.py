"""Supernode cluster traffic as an attacker on the network would try it: a
cluster needs a secret to start, each member request is signed for its method,
path, body and time, a sniffed one cannot be replayed or reused, and no
endpoint hands out a task's source credentials."""
import http.client
import json
import secrets
import time

import pytest
from helpers import refused_address, wait_until

from dfly.protocol import signing
from dfly.protocol.messages import RegisterRequest
from dfly.supernode.client import SupernodeClient

SECRET = "a-test-secret-of-some-length"


@pytest.fixture
def member(supernode_factory):
    """A cluster member on 127.0.0.1:0 whose one other member (`other`) never answers:
    the test plays that member, or an attacker who sniffed its requests."""
    with refused_address() as (host, port):
        other = "%s:%d" % (host, port)
        running = supernode_factory(cluster=["127.0.0.1:0", other], cluster_secret=SECRET,
                                    member_dead_after_s=0.3)
        running.other = other
        running.key = signing.cluster_key(SECRET, ["127.0.0.1:0", other])
        yield running


def _send(running, method: str, path: str, body: bytes, header):
    host, port = running.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        headers = {"Content-Type": "application/json"}
        if header is not None:
            headers[signing.HEADER] = header
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _ping(running, sender: str = "", body_member: str = "", now=None, key=None):
    """(the body and the header a member sends in a ping)."""
    sender = sender or running.other
    body = json.dumps({"member": body_member or sender, "active": []}).encode()
    header = signing.sign(key or running.key, sender, "POST", "/v1/cluster/ping", body,
                          time.time() if now is None else now, secrets.token_hex(16))
    return body, header


def test_a_cluster_without_a_secret_refuses_to_start(supernode_factory):
    with pytest.raises(ValueError) as caught:
        supernode_factory(cluster=["127.0.0.1:0", "127.0.0.1:1"])
    assert "--cluster-secret" in str(caught.value)


@pytest.mark.time_limit(20)
def test_a_sniffed_member_request_cannot_be_replayed(member):
    body, header = _ping(member)
    assert _send(member, "POST", "/v1/cluster/ping", body, header)[0] == 200
    status, reply = _send(member, "POST", "/v1/cluster/ping", body, header)
    assert status == 403 and b"replayed" in reply


@pytest.mark.time_limit(20)
def test_a_signature_covers_the_body_the_path_and_the_time(member):
    body, header = _ping(member)
    other_body = body.replace(b"[]", b'["' + b"f" * 64 + b'"]')
    assert _send(member, "POST", "/v1/cluster/ping", other_body, header)[0] == 403
    assert _send(member, "GET", "/v1/cluster/tasks/" + "f" * 64, b"", header)[0] == 403
    body, stale = _ping(member, now=time.time() - 2 * signing.WINDOW_S)
    assert _send(member, "POST", "/v1/cluster/ping", body, stale)[0] == 403
    body, foreign = _ping(member, key=signing.cluster_key("another secret", ["127.0.0.1:0", member.other]))
    assert _send(member, "POST", "/v1/cluster/ping", body, foreign)[0] == 403
    assert _send(member, "POST", "/v1/cluster/ping", body, None)[0] == 403
    body, lying = _ping(member, body_member="127.0.0.1:0")   # signed by one, in another's name
    assert _send(member, "POST", "/v1/cluster/ping", body, lying)[0] == 403


@pytest.mark.time_limit(20)
def test_no_endpoint_returns_a_tasks_source_credentials(member, origin):
    src = origin.add("private.bin", b"x" * 1000)
    client = SupernodeClient(member.address, timeout_s=5)
    try:   # once the other member is dead, this one owns every task
        wait_until(lambda: [m["alive"] for m in client.cluster()["members"] if not m["self"]] == [False],
                   timeout=10, message="the silent member is dead")
        tid, _ = client.register(RegisterRequest(src.url, "p1", 1, "127.0.0.1",
                                                 headers={"Authorization": "Bearer hunter2"}))
        sign = (lambda method, path, body: signing.sign(member.key, member.other, method, path, body,
                                                        time.time(), secrets.token_hex(16)))
        replica = client.replica(tid, sign)
        assert replica["url"] == src.url
        listed = [client.task(tid), client.tasks(), client.cluster(), replica]
    finally:
        client.close()
    assert "hunter2" not in json.dumps(listed)
