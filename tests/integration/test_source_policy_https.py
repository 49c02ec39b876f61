"""The source policy with https origins (a real TLS origin, its certificate from a
test CA the supernode trusts through SSL_CERT_FILE): allowed, it is fetched over
the connection the policy judged; on a denied address (127.0.0.2) it is refused
directly and through a redirect from an allowed https origin, before a byte."""
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from certs import Certs
from helpers import MiB, content, sha256_file
from origin import Origin

from dfly import errors


@pytest.fixture
def tls_server(tmp_path, monkeypatch):
    """wrap(server): serve `server` (an http.server) over TLS with a certificate for
    127.0.0.1 and 127.0.0.2 from a CA this process trusts from now on."""
    certs = Certs(str(tmp_path / "certs"))
    pair = certs.host("origin", "127.0.0.1", "127.0.0.2")
    monkeypatch.setenv("SSL_CERT_FILE", certs.ca)   # read by every new default context
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pair["tls_cert"], pair["tls_key"])

    def wrap(server):
        server.socket = context.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)
        return server
    return wrap


@pytest.fixture
def inner(tmp_path, tls_server):
    """An https origin on 127.0.0.2: a host only the supernode should reach."""
    server = Origin(str(tmp_path / "inner"), host="127.0.0.2")
    tls_server(server.server)
    yield server
    server.stop()


@pytest.fixture
def redirector(tls_server, inner):
    """https://127.0.0.1:PORT/NAME -> 302 to https://127.0.0.2:INNER/NAME."""
    target = "https://127.0.0.2:%d" % inner.address[1]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = tls_server(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    thread = threading.Thread(target=server.serve_forever, name="tls-redirector", daemon=True)
    thread.start()
    yield "https://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_an_allowed_https_origin_is_fetched_through_an_https_redirect(
        inner, redirector, supernode, client_factory, tmp_path):
    src = inner.add("blob", content(2 * MiB, seed=51))
    result = client_factory([supernode.address]).download(redirector + "/blob", str(tmp_path / "out"))
    assert result.bytes_from_source == 0 and sha256_file(str(tmp_path / "out")) == src.sha256


@pytest.mark.parametrize("through_redirect", [False, True])
def test_an_https_origin_on_a_denied_address_is_refused(
        through_redirect, inner, redirector, supernode_factory, client_factory, tmp_path):
    inner.add("blob", content(MiB, seed=52))
    supernode = supernode_factory(deny_source=["127.0.0.2/32"])
    url = redirector + "/blob" if through_redirect else "https://127.0.0.2:%d/blob" % inner.address[1]
    with pytest.raises(errors.SourceDenied, match="source policy"):
        client_factory([supernode.address]).download(url, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    assert inner.requests("blob") == 0
