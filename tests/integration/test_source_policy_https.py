"""The source policy with https origins (a real TLS origin, its certificate from a
test CA the supernode trusts through SSL_CERT_FILE): allowed, it is fetched over
the connection the policy judged; on a denied address (127.0.0.2) it is refused
directly and through a redirect from an allowed https origin, before a byte."""
import ssl

import pytest
from certs import Certs
from helpers import MiB, content, redirector, sha256_file
from origin import Origin

from dfly import errors


@pytest.fixture
def tls_context(tmp_path, monkeypatch):
    """A server context with a certificate for 127.0.0.1 and 127.0.0.2 from a CA
    this process trusts from now on."""
    certs = Certs(str(tmp_path / "certs"))
    pair = certs.host("origin", "127.0.0.1", "127.0.0.2")
    monkeypatch.setenv("SSL_CERT_FILE", certs.ca)   # read by every new default context
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pair["tls_cert"], pair["tls_key"])
    return context


@pytest.fixture
def inner(tmp_path, tls_context):
    """An https origin on 127.0.0.2: a host only the supernode should reach."""
    server = Origin(str(tmp_path / "inner"), host="127.0.0.2", context=tls_context)
    yield server
    server.stop()


@pytest.fixture
def tls_redirector(tls_context, inner):
    """https://127.0.0.1:PORT/NAME -> 302 to https://127.0.0.2:INNER/NAME."""
    with redirector(context=tls_context) as server:
        server.target = "https://127.0.0.2:%d" % inner.address[1]
        yield "https://127.0.0.1:%d" % server.server_address[1]


def test_an_allowed_https_origin_is_fetched_through_an_https_redirect(
        inner, tls_redirector, supernode, client_factory, tmp_path):
    src = inner.add("blob", content(2 * MiB, seed=51))
    result = client_factory([supernode.address]).download(tls_redirector + "/blob", str(tmp_path / "out"))
    assert result.bytes_from_source == 0 and sha256_file(str(tmp_path / "out")) == src.sha256


@pytest.mark.parametrize("through_redirect", [False, True])
def test_an_https_origin_on_a_denied_address_is_refused(
        through_redirect, inner, tls_redirector, supernode_factory, client_factory, tmp_path):
    inner.add("blob", content(MiB, seed=52))
    supernode = supernode_factory(deny_source=["127.0.0.2/32"])
    url = tls_redirector + "/blob" if through_redirect else "https://127.0.0.2:%d/blob" % inner.address[1]
    with pytest.raises(errors.SourceDenied, match="source policy"):
        client_factory([supernode.address]).download(url, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    assert inner.requests("blob") == 0
