"""What the socket fuzzer (test_fuzz_listeners.py) found, each pinned as a plain
request: the answer is a typed 4xx, never a 500 or a traceback."""
import pytest
from helpers import healthy, raw_exchange, status_of

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
