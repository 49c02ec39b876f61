"""A source that redirects: followed, but credentials only go to the host the
user named (a registry's redirect to blob storage must not carry the token)."""
import pytest
from helpers import MiB, content, sha256_file
from helpers import redirector as redirecting


@pytest.fixture
def redirector():
    """127.0.0.1:PORT/NAME -> 302 to TARGET/NAME, recording the headers it saw."""
    with redirecting() as server:
        yield server


def _other_host(origin) -> str:
    # localhost and 127.0.0.1 are the same server but, to HTTP, different hosts
    return "http://localhost:%d" % origin.address[1]


@pytest.mark.parametrize("via_supernode", [True, False])
def test_a_redirect_to_another_host_is_followed_without_the_credentials(
        origin, redirector, supernode, client_factory, tmp_path, via_supernode):
    src = origin.add("blob", content(5 * MiB, seed=21))
    redirector.target = _other_host(origin)
    url = "http://127.0.0.1:%d/blob" % redirector.server_address[1]
    client = client_factory([supernode.address] if via_supernode else [])
    result = client.download(url, str(tmp_path / "blob"), digest=src.digest,
                             headers={"Authorization": "Bearer secret-token", "X-Trace": "t1"})
    assert sha256_file(str(tmp_path / "blob")) == src.sha256
    if via_supernode:   # the supernode followed the redirect; the client got pieces, not the source
        assert (result.via, result.bytes_from_source, result.bytes_from_supernode) == ("p2p", 0, src.size)
    else:
        assert (result.via, result.bytes_from_source) == ("source", src.size)
    assert len(redirector.seen) == 1 and origin.requests("blob") == 1
    assert redirector.seen[0].get("Authorization") == "Bearer secret-token"
    followed = origin.served("blob")[0].headers
    assert "Authorization" not in followed
    assert followed.get("X-Trace") == "t1"


def test_a_redirect_to_another_port_drops_the_credentials_as_curl_does(origin, redirector,
                                                                        client_factory, tmp_path):
    src = origin.add("blob", content(MiB, seed=22))
    redirector.target = "http://127.0.0.1:%d" % origin.address[1]
    url = "http://127.0.0.1:%d/blob" % redirector.server_address[1]
    client_factory([]).download(url, str(tmp_path / "blob"), headers={"Authorization": "Bearer t"})
    assert sha256_file(str(tmp_path / "blob")) == src.sha256
    assert "Authorization" not in origin.served("blob")[0].headers
