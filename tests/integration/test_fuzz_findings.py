"""What the socket fuzzer (test_fuzz_listeners.py) found, each pinned as a plain
request: the answer is a typed 4xx, never a 500 or a traceback."""
import json

import pytest
from daemons import DaemonFactory
from fuzz import private_network, why_no_private_network
from helpers import healthy, raw_exchange, refused_address, status_of, wait_until

from dfly.supernode.client import SupernodeClient

TID = "0" * 64


def _address(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


@pytest.fixture
def cluster_supernode(supernode_factory):
    return supernode_factory(listen="127.0.0.1:0", cluster=["127.0.0.1:0"], cluster_secret="s3cret")


@pytest.mark.parametrize("path", ["/v1/cluster/tasks/" + TID, "/v1/cluster/ping"])
def test_a_cluster_token_with_non_ascii_characters_is_refused_not_a_500(cluster_supernode, path):
    address = _address(cluster_supernode.address)
    method = b"GET" if "tasks" in path else b"POST"
    reply = raw_exchange(address, method + b" " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                         b"X-Dfly-Cluster: not-the-\xd9\xa3token\r\nContent-Length: 2\r\n\r\n{}")
    assert status_of(reply) == 403, reply[:300]
    assert healthy(address)


@pytest.fixture
def private_front(tmp_path):
    """A daemon in a network namespace of its own: without the fix below it would
    hand these names to the resolver."""
    reason = why_no_private_network()
    if reason:
        pytest.skip(reason)
    with private_network():
        factory = DaemonFactory(str(tmp_path / "daemons"))
        try:
            yield _address(factory.start().address)
        finally:
            factory.stop_all()


# Hosts that are not host names: without a check the proxy handed them to http.client
# (InvalidURL) or the resolver (idna's UnicodeError), and answered 500.
BAD_HOSTS = [b"127..1", b"127.0.0.1\x00", b"12\x18.0.0.1", b"[zz]"]


@pytest.mark.parametrize("host", BAD_HOSTS, ids=[h.decode("latin-1").encode("unicode_escape").decode()
                                                 for h in BAD_HOSTS])
def test_the_proxy_refuses_a_target_that_is_not_a_host_name(private_front, host):
    address = private_front
    for line in (b"GET http://" + host + b":9/x HTTP/1.1", b"CONNECT " + host + b":9 HTTP/1.1"):
        reply = raw_exchange(address, line + b"\r\nHost: x\r\n\r\n")
        assert status_of(reply) == 400, (line, reply[:300])
    assert healthy(address)


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/v\x0e/x", "http://127.0.0.1:{port}/a b",
                                 "http://127.0.0.1:{port}/\xff", "http://127.0.0.1:@/x"])
def test_a_url_urllib_cannot_send_is_refused_or_made_valid_never_left_running(supernode, url):
    """Once accepted as typed, its fetch thread died on http.client's refusal and the
    task stayed "running" with every get of it waiting. Now it is normalised into a
    URL urllib sends (and that fails here: the port refuses connections), or refused."""
    with refused_address() as (_, port):
        _register_and_see_it_end(supernode, url.format(port=port))


def _register_and_see_it_end(supernode, url):
    body = json.dumps({"url": url, "peer": {"id": "p1", "port": 9}}).encode()
    head = b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    reply = raw_exchange(_address(supernode.address), head + body)
    assert status_of(reply) in (200, 400), reply[:300]
    if status_of(reply) == 200:
        tid = json.loads(reply.partition(b"\r\n\r\n")[2])["task_id"]
        client = SupernodeClient(supernode.address, timeout_s=5)
        try:
            wait_until(lambda: client.task(tid)["state"] == "failed", timeout=10,
                       message="the task of %r failed" % url)
        finally:
            client.close()
