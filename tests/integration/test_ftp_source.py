"""ftp:// sources through a supernode, against a real FTP server (pyftpdlib) on
loopback: fetched once for several gets, resumed with REST, typed errors, a
SIZE that lies caught, credentials kept out of every listing."""
import os

import pytest
from ftpserver import PASSWORD, USER, FtpOrigin
from helpers import MiB, content, failed_fetch_kept, leftovers, run_all, sha256_file

from dfly.errors import SourceError
from dfly.protocol.pieces import MIN_PIECE_SIZE
from dfly.supernode.client import SupernodeClient

PIECE = MIN_PIECE_SIZE


@pytest.fixture
def ftp(tmp_path):
    server = FtpOrigin(str(tmp_path / "ftp"))
    yield server
    server.stop()


@pytest.mark.time_limit(60)
def test_four_gets_through_a_supernode_read_an_ftp_file_from_the_server_once(
        ftp, supernode, client_factory, downloads):
    # 16 MiB (four pieces) rather than 64: the same path, a quarter of the disk
    # and CPU on a shared 2-core CI box; the e2e failover test moves 64 MiB.
    data = content(16 * MiB, seed=41)
    url = ftp.add("big.bin", data)
    clients = [client_factory([supernode.address]) for _ in range(4)]
    outcomes = run_all([lambda c=c, i=i: c.download(url, str(downloads / ("out%d" % i)))
                        for i, c in enumerate(clients)], timeout=50)
    assert [e for _, e in outcomes if e is not None] == []
    for i in range(4):
        assert sha256_file(str(downloads / ("out%d" % i))) == sha256_file_of(data)
    assert ftp.body_bytes() == len(data)   # the origin sent the file once
    assert all(r.via == "p2p" for r, _ in outcomes)


@pytest.mark.time_limit(30)
def test_an_ftp_transfer_cut_short_is_resumed_with_rest_from_the_last_whole_piece(
        ftp, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(failure_ttl_s=0)
    data = content(3 * PIECE, seed=42)
    url = ftp.add("resumed.bin", data)
    ftp.cut_after["resumed.bin"] = PIECE + PIECE // 2
    cut = failed_fetch_kept(supernode.address, url)
    assert "sent 1.5 MiB of 3.0 MiB" in cut["error"], cut["error"]
    first = ftp.body_bytes()
    assert PIECE < first < len(data)

    client_factory([supernode.address]).download(url, str(downloads / "whole.bin"))
    assert sha256_file(str(downloads / "whole.bin")) == sha256_file_of(data)
    assert ftp.rests == [PIECE]                     # REST from the last whole piece, not 0
    assert ftp.body_bytes() - first == len(data) - PIECE


@pytest.mark.time_limit(30)
def test_an_ftp_server_that_lies_about_size_fails_the_get_clearly_and_leaves_no_file(
        ftp, supernode, client_factory, downloads):
    for name, lie in (("longer.bin", 1000), ("shorter.bin", -1000)):
        url = ftp.add(name, content(PIECE + 5000, seed=43))
        ftp.size_lies[name] = lie
        with pytest.raises(SourceError) as failed:
            client_factory([supernode.address]).download(url, str(downloads / name))
        assert "sent" in str(failed.value), failed.value
        assert not os.path.exists(str(downloads / name))
    assert leftovers(str(downloads)) == []


@pytest.mark.time_limit(30)
def test_ftp_credentials_are_never_shown_and_a_wrong_password_is_a_denial(
        ftp, supernode, client_factory, downloads):
    url = ftp.add("secret.bin", content(5000, seed=44))
    client_factory([supernode.address]).download(url, str(downloads / "ok.bin"))
    with pytest.raises(SourceError) as denied:
        client_factory([supernode.address]).download(ftp.url("secret.bin", password="wrong-pw"),
                                                     str(downloads / "no.bin"))
    assert "denied" in str(denied.value) and "wrong-pw" not in str(denied.value)
    with pytest.raises(SourceError) as missing:
        client_factory([supernode.address]).download(ftp.url("nothere.bin"),
                                                     str(downloads / "none.bin"))
    assert "404" in str(missing.value) and PASSWORD not in str(missing.value)
    client = SupernodeClient(supernode.address, timeout_s=5)
    try:
        listing = repr(client.tasks())
    finally:
        client.close()
    assert "ftp://***@127.0.0.1" in listing
    assert PASSWORD not in listing and "wrong-pw" not in listing


def sha256_file_of(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


@pytest.mark.time_limit(30)
def test_an_ftps_source_is_read_over_tls_checked_against_the_source_ca(
        tmp_path, supernode_factory, client_factory, downloads):
    pytest.importorskip("OpenSSL")   # pyftpdlib's TLS side needs pyOpenSSL
    from certs import Certs
    certs = Certs(str(tmp_path / "certs"))
    host = certs.host("ftp-origin")
    server = FtpOrigin(str(tmp_path / "ftps"), tls=(host["tls_cert"], host["tls_key"]))
    try:
        data = content(PIECE + 1234, seed=45)
        url = server.add("tls.bin", data)
        with pytest.raises(SourceError) as untrusted:
            client_factory([]).download(url, str(downloads / "no.bin"))
        assert "is not trusted" in str(untrusted.value), untrusted.value
        supernode = supernode_factory(source_ca_file=certs.ca)
        client_factory([supernode.address]).download(url, str(downloads / "yes.bin"))
        assert sha256_file(str(downloads / "yes.bin")) == sha256_file_of(data)
    finally:
        server.stop()


def test_ftp_and_s3_sources_are_judged_by_the_source_policy_like_http_ones(
        ftp, supernode_factory, client_factory, downloads):
    from dfly.errors import SourceDenied
    url = ftp.add("policy.bin", content(5000, seed=46))
    denied = {"ftp scheme": (url, {"deny_source": ["ftp:"]}),
              "ftp host address": (url, {"deny_source": ["127.0.0.0/8"]}),
              "s3 endpoint address": ("s3://bucket/key", {"deny_source": ["127.0.0.0/8"],
                                                          "s3_endpoint": "http://127.0.0.1:9"})}
    for what, (source, settings) in denied.items():
        supernode = supernode_factory(data_dir=downloads.parent / what.replace(" ", "-"), **settings)
        with pytest.raises(SourceDenied) as refused:
            client_factory([supernode.address]).download(source, str(downloads / "x"))
        assert "source policy" in str(refused.value), (what, refused.value)
    assert ftp.body_bytes() == 0


def test_the_ftp_origin_counts_the_bytes_a_client_holds_while_the_transfer_goes_on(ftp):
    # What the source tests read right after a get: counted at the data connection's
    # close instead, the bytes of a transfer the client ends itself could be missing.
    import ftplib
    data = content(16 * MiB, seed=47)   # more than the socket buffers hold
    ftp.add("counted.bin", data)
    client = ftplib.FTP()
    client.connect(ftp.host, ftp.port, timeout=10)
    try:
        client.login(USER, PASSWORD)
        client.voidcmd("TYPE I")
        conn = client.transfercmd("RETR counted.bin")
        with conn, conn.makefile("rb") as f:
            first = f.read(MiB)
            assert ftp.body_bytes() >= len(first)
            rest = f.read()
        assert first + rest == data and ftp.body_bytes() == len(data)
    finally:
        client.close()
