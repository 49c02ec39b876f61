"""s3:// sources against a real S3-compatible server (moto in server mode, its
signature checking on): signed GETs through a supernode, a wrong secret told as
a denial, ranged resume, and an object changed between reads never mixed."""
import hashlib
import os

import pytest
from helpers import MiB, content, failed_fetch_kept, leftovers, sha256_file
from s3server import S3Origin

from dfly.errors import SourceChanged, SourceError
from dfly.peer.source import Fill, fill_from_source
from dfly.peer.storage import PieceFile
from dfly.protocol.pieces import MIN_PIECE_SIZE
from dfly.sources import open_source
from dfly.sources.config import SourceOptions

PIECE = MIN_PIECE_SIZE
URL = "s3://dfly-bucket/"


@pytest.fixture(scope="module")
def s3():
    server = S3Origin()   # one moto process for the module: it takes seconds to start
    yield server
    server.stop()


@pytest.mark.time_limit(60)
def test_two_gets_through_a_supernode_read_a_signed_s3_object(
        s3, supernode_factory, client_factory, downloads):
    data = content(6 * MiB, seed=51)
    s3.put("images/layer.bin", data)
    supernode = supernode_factory(**s3.settings())
    for name in ("one.bin", "two.bin"):
        client_factory([supernode.address]).download(URL + "images/layer.bin", str(downloads / name))
        assert sha256_file(str(downloads / name)) == hashlib.sha256(data).hexdigest()


@pytest.mark.time_limit(60)
def test_a_wrong_secret_is_a_clear_denial_and_leaves_no_file(
        s3, supernode_factory, client_factory, downloads):
    s3.put("denied.bin", content(5000, seed=52))
    supernode = supernode_factory(**s3.settings(secret="not-the-secret"))
    with pytest.raises(SourceError) as denied:
        client_factory([supernode.address]).download(URL + "denied.bin", str(downloads / "d.bin"))
    assert "S3 denied access to s3://dfly-bucket/denied.bin (SignatureDoesNotMatch)" \
        in str(denied.value)
    assert "not-the-secret" not in str(denied.value)
    assert not os.path.exists(str(downloads / "d.bin")) and leftovers(str(downloads)) == []


@pytest.mark.time_limit(30)
def test_a_ranged_read_resumes_where_asked_and_a_changed_object_comes_whole(s3):
    options = SourceOptions(**s3.settings())
    etag = s3.put("ranged.bin", b"a" * 1000 + b"b" * 24)
    with open_source(URL + "ranged.bin", {"Range": "bytes=1000-", "If-Range": etag}, 5,
                     None, options) as resumed:
        assert resumed.status == 206
        assert resumed.headers["Content-Range"] == "bytes 1000-1023/1024"
        assert resumed.read() == b"b" * 24
    new_etag = s3.put("ranged.bin", b"c" * 1024)
    with open_source(URL + "ranged.bin", {"Range": "bytes=1000-", "If-Range": etag}, 5,
                     None, options) as whole:
        assert whole.status == 200 and whole.headers["ETag"] == new_etag
        assert whole.read() == b"c" * 1024


@pytest.mark.time_limit(30)
def test_pieces_fetched_by_range_complete_a_file_and_a_changed_object_is_never_mixed_in(
        s3, tmp_path):
    options = SourceOptions(**s3.settings())
    old = content(3 * PIECE, seed=53)
    etag = s3.put("pieces.bin", old)
    digests = {n: hashlib.sha256(old[n * PIECE:(n + 1) * PIECE]).hexdigest() for n in range(3)}

    def half_held(name):
        part = PieceFile(str(tmp_path / name))
        part.set_geometry(len(old), PIECE)
        part.write(0, old[:PIECE])
        part.mark_held(0)
        return part

    part = half_held("same.part")
    fill_from_source(URL + "pieces.bin", {}, part, Fill(dict(digests), etag), 5, options=options)
    part.close()
    with open(str(tmp_path / "same.part"), "rb") as f:
        assert f.read() == old

    s3.put("pieces.bin", content(3 * PIECE, seed=54))   # the object changes under the download
    part = half_held("changed.part")
    replaced = []

    def refuse(reason, changed):
        replaced.append((reason, changed))
        raise SourceChanged(reason)
    with pytest.raises(SourceChanged):
        fill_from_source(URL + "pieces.bin", {}, part, Fill(dict(digests), etag), 5,
                         on_replace=refuse, options=options)
    part.close()
    assert replaced and replaced[0][1] is True, replaced
    assert "changed" in replaced[0][0]


@pytest.fixture
def cutting(s3):
    from s3server import CuttingProxy
    proxy = CuttingProxy(s3.endpoint)
    yield proxy
    proxy.stop()


@pytest.mark.time_limit(60)
def test_an_s3_fetch_cut_midway_resumes_with_a_ranged_get(
        s3, cutting, supernode_factory, client_factory, downloads, caplog):
    data = content(3 * PIECE, seed=55)
    s3.put("resume.bin", data)
    supernode = supernode_factory(failure_ttl_s=0, **dict(s3.settings(), s3_endpoint=cutting.endpoint))
    cutting.cut_after = PIECE + PIECE // 2
    failed_fetch_kept(supernode.address, URL + "resume.bin")
    first = cutting.sent_back
    caplog.set_level("INFO", logger="dfly.supernode")
    client_factory([supernode.address]).download(URL + "resume.bin", str(downloads / "whole.bin"))
    assert sha256_file(str(downloads / "whole.bin")) == hashlib.sha256(data).hexdigest()
    assert "resuming source at byte %d" % PIECE in caplog.text
    assert cutting.sent_back - first < len(data) - PIECE + 64 * 1024   # the rest, plus headers


@pytest.mark.time_limit(60)
def test_an_s3_object_changed_before_the_resume_is_read_whole_never_mixed(
        s3, cutting, supernode_factory, client_factory, downloads, caplog):
    s3.put("changing.bin", content(3 * PIECE, seed=56))
    supernode = supernode_factory(failure_ttl_s=0, **dict(s3.settings(), s3_endpoint=cutting.endpoint))
    cutting.cut_after = PIECE + PIECE // 2
    failed_fetch_kept(supernode.address, URL + "changing.bin")
    new = content(3 * PIECE, seed=57)
    s3.put("changing.bin", new)
    caplog.set_level("INFO", logger="dfly.supernode")
    client_factory([supernode.address]).download(URL + "changing.bin", str(downloads / "new.bin"))
    assert sha256_file(str(downloads / "new.bin")) == hashlib.sha256(new).hexdigest()
    assert "resuming source" not in caplog.text
    assert "source changed" in caplog.text and "cut afresh" in caplog.text


@pytest.mark.time_limit(60)
def test_an_s3_endpoint_on_ipv6_is_signed_for_its_bracketed_host(
        s3, supernode_factory, client_factory, downloads):
    # SigV4 signs the Host header: for an IPv6 endpoint it is [::1]:PORT, as moto
    # (behind a relay on ::1) reads it back to check the signature.
    from s3server import CuttingProxy
    relay = CuttingProxy(s3.endpoint, host="::1")
    try:
        data = content(2 * MiB, seed=57)
        s3.put("v6.bin", data)
        supernode = supernode_factory(listen="[::1]:0", **dict(s3.settings(), s3_endpoint=relay.endpoint))
        assert relay.endpoint.startswith("http://[::1]:")
        client_factory([supernode.address], upload_listen="[::1]:0").download(
            URL + "v6.bin", str(downloads / "v6.bin"))
        assert sha256_file(str(downloads / "v6.bin")) == hashlib.sha256(data).hexdigest()
        assert relay.sent_back >= len(data)
    finally:
        relay.stop()
