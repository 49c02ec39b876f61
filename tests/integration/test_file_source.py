"""file:// sources: read only under the roots the operator lists, with mtime and
size as the validator; `..` and symlinks out of a root are refused, and with
no root file:// is refused altogether."""
import hashlib
import os

import pytest
from helpers import content, leftovers, sha256_file

from dfly.errors import SourceDenied, SourceError
from dfly.sources import open_source
from dfly.sources.config import SourceOptions


@pytest.fixture
def share(tmp_path):
    root = tmp_path / "share"
    (root / "images").mkdir(parents=True)
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "secret.bin").write_bytes(b"not for you")
    return root


def test_a_file_under_a_root_is_served_through_a_supernode_and_by_get_itself(
        share, supernode_factory, client_factory, downloads):
    data = content(700_000, seed=71)
    (share / "images" / "a b.bin").write_bytes(data)
    url = "file://" + str(share / "images" / "a b.bin")
    supernode = supernode_factory(source_file_root=[str(share)])
    client_factory([supernode.address]).download(url, str(downloads / "via-sn.bin"))
    client_factory([], source_file_root=[str(share)]).download(url, str(downloads / "direct.bin"))
    for name in ("via-sn.bin", "direct.bin"):
        assert sha256_file(str(downloads / name)) == hashlib.sha256(data).hexdigest()


def test_file_urls_are_refused_without_a_root_and_outside_every_root(
        share, tmp_path, supernode_factory, client_factory, downloads):
    (share / "images" / "ok.bin").write_bytes(b"fine")
    os.symlink(str(tmp_path / "private" / "secret.bin"), str(share / "images" / "link.bin"))
    os.symlink(str(tmp_path / "private"), str(share / "dirlink"))
    without = supernode_factory(data_dir=tmp_path / "sn0")
    with pytest.raises(SourceDenied) as refused:
        client_factory([without.address]).download("file://" + str(share / "images" / "ok.bin"),
                                                   str(downloads / "x"))
    assert "source-file-root" in str(refused.value)
    rooted = supernode_factory(data_dir=tmp_path / "sn1", source_file_root=[str(share)])
    escapes = [str(share / "images" / ".." / ".." / "private" / "secret.bin"),
               str(share / "images" / "link.bin"), str(share / "dirlink" / "secret.bin"),
               str(tmp_path / "private" / "secret.bin")]
    for path in escapes:
        for via in ([rooted.address], []):
            with pytest.raises((SourceDenied, SourceError)) as refused:
                client_factory(via, source_file_root=[str(share)]).download(
                    "file://" + path, str(downloads / "x"))
            assert "not for you" not in str(refused.value)
            assert "denied" in str(refused.value).lower() or "refused" in str(refused.value)
    assert leftovers(str(downloads)) == []


def test_the_validator_is_mtime_and_size_and_a_resume_of_a_changed_file_comes_whole(share):
    path = share / "v.bin"
    path.write_bytes(b"x" * 100)
    options = SourceOptions(source_file_root=[str(share)])
    url = "file://" + str(path)
    with open_source(url, {}, 5, None, options) as first:
        etag = first.headers["ETag"]
        assert first.headers["Content-Length"] == "100" and first.read() == b"x" * 100
    with open_source(url, {"Range": "bytes=90-", "If-Range": etag}, 5, None, options) as part:
        assert part.status == 206 and part.read() == b"x" * 10
    path.write_bytes(b"y" * 120)
    os.utime(str(path), ns=(1, 10 ** 18))
    with open_source(url, {"Range": "bytes=90-", "If-Range": etag}, 5, None, options) as whole:
        assert whole.status == 200 and whole.read() == b"y" * 120
