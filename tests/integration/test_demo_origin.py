"""The demo's origin (also the e2e tests' origin) answers as nginx does: a strong
ETag per file version, so every supernode that cuts the file, or takes a task
over and cuts it again, names the same content version."""
import os
import urllib.request

from dfly.demo import CountingOrigin
from dfly.supernode.cdn import content_version_for


def _etag(origin, name):
    with urllib.request.urlopen(origin.url(name), timeout=10) as reply:
        reply.read()
        return reply.headers["ETag"]


def test_the_demo_origin_names_each_version_of_a_file_with_a_strong_etag(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    origin = CountingOrigin(str(tmp_path))
    try:
        first = _etag(origin, "f.bin")
        assert first.startswith('"') and _etag(origin, "f.bin") == first
        assert content_version_for(first, 3, 1) == content_version_for(_etag(origin, "f.bin"), 3, 1)
        path.write_bytes(b"other")
        os.utime(str(path), ns=(1, 1))
        assert _etag(origin, "f.bin") != first
    finally:
        origin.stop()
