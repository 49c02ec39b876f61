"""`dfly daemon` as a registry mirror, with the real parts: Debian's
docker-registry upstream, skopeo pulling through a registries.conf mirror, a
supernode, several daemons. Blobs cross from the registry once and then go
peer to peer; manifests and indexes pass through; Range works on blobs."""
import hashlib
import json
import os

import pytest
from daemons import fetch, stats
from helpers import run_all
from registry import MISSING, Registry, build_image, dir_layers, mirror_conf, pull, push

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "ok")

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
               "application/vnd.docker.distribution.manifest.list.v2+json")


@pytest.fixture
def registry(tmp_path):
    running = Registry(str(tmp_path / "registry"))
    yield running
    running.stop()


@pytest.fixture
def image(tmp_path, registry):
    built = build_image(str(tmp_path / "layout"), "v1", layer_sizes=(3 << 20, 1 << 20, 512 << 10))
    push(built, registry, "team/app")
    return built


def _blob_path(digest: str, repo: str = "team/app") -> str:
    return "/v2/%s/blobs/%s" % (repo, digest)


@pytest.mark.time_limit(90)
def test_daemons_pulling_at_once_get_correct_layers_with_each_blob_leaving_the_registry_once(
        tmp_path, registry, image, supernode, daemons):
    started = [daemons.start(supernode=[supernode.address], registry_mirror=registry.url)
               for _ in range(3)]
    confs = [mirror_conf(str(tmp_path / ("registries%d.conf" % i)), registry, d.address)
             for i, d in enumerate(started)]

    outcomes = run_all([lambda c=c, i=i: pull(c, registry, "team/app", "v1", str(tmp_path / ("out%d" % i)))
                        for i, c in enumerate(confs)], timeout=60)
    assert [e for _, e in outcomes] == [None] * 3
    for i in range(3):
        assert dir_layers(str(tmp_path / ("out%d" % i))) == image.layers["amd64"]

    registry.settle()
    for digest in image.layers["amd64"]:
        assert len(registry.blob_gets(digest)) == 1, "blob %s left the registry more than once" % digest
    later = daemons.start(supernode=[supernode.address], registry_mirror=registry.url)
    conf = mirror_conf(str(tmp_path / "later.conf"), registry, later.address)
    pull(conf, registry, "team/app", "v1", str(tmp_path / "later"))
    assert dir_layers(str(tmp_path / "later")) == image.layers["amd64"]
    registry.settle()
    for digest in image.layers["amd64"]:
        assert len(registry.blob_gets(digest)) == 1
    later_stats = stats(later)
    assert later_stats["bytes_from_peers"] >= image.size_of("amd64")
    assert later_stats["bytes_from_source"] == later_stats["bytes_from_supernode"] == 0


@pytest.mark.time_limit(60)
def test_each_platform_of_a_multi_arch_index_is_pulled_through_the_mirror(
        tmp_path, registry, image, supernode, daemons):
    running = daemons.start(supernode=[supernode.address], registry_mirror=registry.url)
    conf = mirror_conf(str(tmp_path / "registries.conf"), registry, running.address)
    for arch in ("amd64", "arm64"):
        pull(conf, registry, "team/app", "v1", str(tmp_path / arch), arch=arch)
        assert dir_layers(str(tmp_path / arch)) == image.layers[arch]
    status, headers, body = fetch(running.address, "GET", "/v2/team/app/manifests/v1",
                                  {"Accept": INDEX_TYPES})
    assert status == 200
    assert headers["docker-content-digest"] == image.index_digest
    assert "sha256:" + hashlib.sha256(body).hexdigest() == image.index_digest
    assert {m["platform"]["architecture"] for m in json.loads(body)["manifests"]} == {"amd64", "arm64"}


@pytest.mark.time_limit(60)
def test_one_layer_in_two_repositories_is_one_task_fetched_once(tmp_path, registry, supernode, daemons):
    shared = build_image(str(tmp_path / "shared"), "v1", layer_sizes=(2 << 20, 256 << 10),
                         arches=("amd64",), seed=7, shared_layer=1)
    push(shared, registry, "team/one")
    push(shared, registry, "other/two")
    first = daemons.start(supernode=[supernode.address], registry_mirror=registry.url)
    second = daemons.start(supernode=[supernode.address], registry_mirror=registry.url)
    pull(mirror_conf(str(tmp_path / "a.conf"), registry, first.address), registry, "team/one", "v1",
         str(tmp_path / "a"))
    pull(mirror_conf(str(tmp_path / "b.conf"), registry, second.address), registry, "other/two", "v1",
         str(tmp_path / "b"))
    registry.settle()
    for digest in shared.layers["amd64"]:
        assert len(registry.blob_gets(digest)) == 1
    assert stats(second)["bytes_from_peers"] >= shared.size_of("amd64")


@pytest.mark.time_limit(60)
def test_blob_ranges_are_served_from_the_verified_copy(registry, image, supernode, daemons):
    running = daemons.start(supernode=[supernode.address], registry_mirror=registry.url)
    digest = image.layers["amd64"][1]
    with open(os.path.join(image.layout, "blobs", "sha256", digest[7:]), "rb") as f:
        data = f.read()
    status, headers, body = fetch(running.address, "GET", _blob_path(digest))
    assert status == 200 and body == data
    assert headers["docker-content-digest"] == digest
    cases = {"bytes=0-99": data[:100], "bytes=100-": data[100:], "bytes=-100": data[-100:],
             "bytes=%d-%d" % (len(data) - 10, len(data) + 500): data[-10:]}
    for header, expected in cases.items():
        status, headers, body = fetch(running.address, "GET", _blob_path(digest), {"Range": header})
        assert status == 206, header
        assert body == expected, header
        first = len(data) - len(expected)
        assert headers["content-range"] == "bytes %d-%d/%d" % (first if header != "bytes=0-99" else 0,
                                                               (first if header != "bytes=0-99" else 0)
                                                               + len(expected) - 1, len(data))
    status, headers, _ = fetch(running.address, "GET", _blob_path(digest),
                               {"Range": "bytes=%d-" % len(data)})
    assert status == 416 and headers["content-range"] == "bytes */%d" % len(data)
    status, _, body = fetch(running.address, "GET", _blob_path(digest), {"Range": "bytes=0-1,5-9"})
    assert status == 200 and body == data
    registry.settle()
    assert len(registry.blob_gets(digest)) == 1


@pytest.mark.time_limit(60)
def test_head_and_manifest_requests_pass_through_with_the_registrys_headers(registry, image, daemons):
    running = daemons.start(registry_mirror=registry.url)
    manifest = image.manifests["arm64"]
    up = fetch(registry.host, "GET", "/v2/team/app/manifests/%s" % manifest,
               {"Accept": "application/vnd.oci.image.manifest.v1+json"})
    via = fetch(running.address, "GET", "/v2/team/app/manifests/%s" % manifest,
                {"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert via[0] == up[0] == 200 and via[2] == up[2]
    assert via[1]["content-type"] == up[1]["content-type"]
    assert via[1]["docker-content-digest"] == manifest
    head = fetch(running.address, "HEAD", "/v2/team/app/manifests/v1", {"Accept": INDEX_TYPES})
    assert head[0] == 200 and head[2] == b""
    assert head[1]["docker-content-digest"] == image.index_digest
    assert int(head[1]["content-length"]) > 0
    digest = image.layers["arm64"][0]
    head = fetch(running.address, "HEAD", _blob_path(digest))
    assert head[0] == 200 and int(head[1]["content-length"]) == image.blob_sizes[digest]
    assert fetch(running.address, "GET", "/v2/")[0] == 200
    missing = fetch(running.address, "GET", "/v2/team/app/manifests/nope")
    assert missing[0] == 404 and b"MANIFEST_UNKNOWN" in missing[2]
