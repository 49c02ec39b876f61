"""https sources with certificates made by trustme: an origin whose CA is not
trusted is refused with a clear error unless --source-ca-file names it (or
--source-insecure is given, knowingly); a client certificate is shown to an
origin that requires one. Both the supernode's fetch and get's back-to-source."""
import hashlib
import ssl

import pytest
from certs import Certs
from helpers import QuietHandler, Serving, content, leftovers, send_body, sha256_file

from dfly.errors import SourceError

DATA = content(300_000, seed=61)


class HttpsOrigin(Serving):
    """One file at /f.bin over TLS on 127.0.0.1:0; `client_ca`: require a client
    certificate chaining to it."""

    def __init__(self, cert: str, key: str, client_ca: str = ""):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        if client_ca:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED

        class Handler(QuietHandler):
            def do_GET(self):
                send_body(self, DATA, 200, {"ETag": '"v1"'})

        super().__init__(Handler, "https-origin", context=context, quiet=True)
        self.url = "https://%s/f.bin" % self.address


@pytest.fixture
def certs(tmp_path):
    return Certs(str(tmp_path / "certs"))


@pytest.fixture
def https_origin(certs):
    host = certs.host("origin")
    server = HttpsOrigin(host["tls_cert"], host["tls_key"])
    yield server
    server.stop()


def test_an_untrusted_origin_certificate_is_refused_clearly_by_supernode_and_get(
        https_origin, supernode, client_factory, downloads):
    for via in ([supernode.address], []):
        with pytest.raises(SourceError) as refused:
            client_factory(via).download(https_origin.url, str(downloads / "f.bin"))
        assert "is not trusted" in str(refused.value), refused.value
        assert "--source-ca-file" in str(refused.value)
    assert leftovers(str(downloads)) == []


def test_the_origin_ca_given_with_source_ca_file_is_trusted(
        https_origin, certs, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(source_ca_file=certs.ca)
    client_factory([supernode.address]).download(https_origin.url, str(downloads / "a.bin"))
    client_factory([], source_ca_file=certs.ca).download(https_origin.url, str(downloads / "b.bin"))
    for name in ("a.bin", "b.bin"):
        assert sha256_file(str(downloads / name)) == hashlib.sha256(DATA).hexdigest()


def test_source_insecure_is_an_explicit_opt_in_that_accepts_any_certificate(
        https_origin, client_factory, downloads):
    client_factory([], source_insecure=True).download(https_origin.url, str(downloads / "i.bin"))
    assert sha256_file(str(downloads / "i.bin")) == hashlib.sha256(DATA).hexdigest()


def test_a_client_certificate_is_shown_to_an_origin_that_requires_one(
        certs, supernode_factory, client_factory, downloads):
    host, mine = certs.host("origin"), certs.host("fetcher")
    server = HttpsOrigin(host["tls_cert"], host["tls_key"], client_ca=certs.ca)
    try:
        with pytest.raises(SourceError):
            client_factory([], source_ca_file=certs.ca).download(server.url, str(downloads / "no"))
        supernode = supernode_factory(source_ca_file=certs.ca, source_cert=mine["tls_cert"],
                                      source_key=mine["tls_key"])
        client_factory([supernode.address]).download(server.url, str(downloads / "yes.bin"))
        assert sha256_file(str(downloads / "yes.bin")) == hashlib.sha256(DATA).hexdigest()
    finally:
        server.stop()
