"""Air-gapped export and import with the real parts: Debian's docker-registry
with an image pushed by skopeo, a supernode, daemons. An export from the
cluster is read by skopeo (`oci-archive:`), then imported into a fresh
daemon's data dir and pulled through that daemon with the registry stopped;
files exported are served by a fresh supernode with their origin stopped. A
damaged or truncated archive is refused with its first bad entry named, and
the data dir is left as it was."""
import hashlib
import io
import json
import os
import tarfile

import pytest
from daemons import fetch, stats
from helpers import MiB, content, reserve_ports, sha256_file
from registry import MISSING, Registry, build_image, dir_layers, mirror_conf, pull, push, skopeo

from dfly import errors
from dfly.export import export
from dfly.importer import DamagedArchive, import_archive
from dfly.protocol import ocilayout
from dfly.protocol.handoff import HandoffRequest
from dfly.protocol.task import task_id
from dfly.supernode.cluster import rendezvous_owner

needs_registry = pytest.mark.skipif(bool(MISSING), reason=MISSING or "ok")
REPO = "team/app"


@pytest.fixture
def registry(tmp_path):
    if MISSING:
        pytest.skip(MISSING)
    running = Registry(str(tmp_path / "registry"))
    yield running
    running.stop()


@pytest.fixture
def image(tmp_path, registry):
    built = build_image(str(tmp_path / "layout"), "v1", layer_sizes=(1 << 20, 256 << 10))
    push(built, registry, REPO)
    return built


def _tree(folder) -> dict:
    """Every file under `folder`: its path and sha256 (what an import may not touch; the
    lock files, datadir.py, are the programs' own, left by whoever held them)."""
    out = {}
    for root, _, names in os.walk(str(folder)):
        for name in names:
            if root == str(folder) and name.endswith(".lock"):
                continue
            path = os.path.join(root, name)
            out[os.path.relpath(path, str(folder))] = sha256_file(path)
    return out


def _members(path: str) -> dict:
    with tarfile.open(path) as tar:
        return {m.name: m.size for m in tar.getmembers()}


@needs_registry
@pytest.mark.time_limit(120)
def test_an_image_exported_from_the_cluster_is_read_by_skopeo_and_pulled_with_the_registry_stopped(
        tmp_path, registry, image, supernode, client_factory, daemons):
    archive = str(tmp_path / "site.tar")
    summary = export(["%s/%s:v1" % (registry.host, REPO)], archive,
                     client_factory([supernode.address]), plain_http=True)
    assert summary.images == 1 and summary.parts == [archive]
    names = _members(archive)
    assert ocilayout.LAYOUT_NAME in names and ocilayout.INDEX_NAME in names
    for digest, size in image.blob_sizes.items():
        assert names[ocilayout.blob_name(digest)] == size
    for digest in [image.index_digest] + list(image.manifests.values()):
        assert ocilayout.blob_name(digest) in names
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile(ocilayout.INDEX_NAME))
    assert index["manifests"][0]["digest"] == image.index_digest
    # Other tools read it: skopeo, as an oci-archive, by the name in index.json.
    name = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    copied = str(tmp_path / "from-archive")
    skopeo("--override-arch", "arm64", "--override-os", "linux", "copy",
           "oci-archive:%s:%s" % (archive, name), "dir:" + copied)
    assert dir_layers(copied) == image.layers["arm64"]

    data_dir = tmp_path / "airgapped-daemon"
    imported = import_archive(archive, str(data_dir), into="daemon")
    assert imported.blobs == len(image.blob_sizes)   # configs and layers
    registry.stop()   # the air-gapped site: nothing listens there any more

    running = daemons.start(data_dir=str(data_dir), registry_mirror=registry.url)
    for arch in ("amd64", "arm64"):
        dest = str(tmp_path / ("pulled-" + arch))
        pull(mirror_conf(str(tmp_path / "registries.conf"), registry, running.address),
             registry, REPO, "v1", dest, arch=arch)
        assert dir_layers(dest) == image.layers[arch]


@needs_registry
@pytest.mark.time_limit(120)
def test_an_image_imported_into_a_fresh_supernode_is_pulled_through_a_daemon_with_the_registry_stopped(
        tmp_path, registry, image, supernode_factory, client_factory, daemons):
    archive = str(tmp_path / "site.tar")
    export(["%s/%s:v1" % (registry.host, REPO)], archive, client_factory(), plain_http=True)
    sn_dir, daemon_dir = tmp_path / "airgapped-supernode", tmp_path / "airgapped-daemon"
    assert import_archive(archive, str(sn_dir), into="supernode").blobs == len(image.blob_sizes)
    kept = import_archive(archive, str(daemon_dir), into="daemon", manifests_only=True)
    assert kept.blobs == 0 and not os.listdir(str(daemon_dir / "daemon" / "cache"))
    registry.stop()

    # The site's registry has another name than the one exported from: blob tasks are
    # keyed by digest alone, and the supernode's imported copy is theirs from any URL.
    supernode = supernode_factory(data_dir=str(sn_dir))
    running = daemons.start(data_dir=str(daemon_dir), supernode=[supernode.address],
                            registry_mirror="http://localhost:%d" % registry.address[1])
    dest = str(tmp_path / "pulled")
    pull(mirror_conf(str(tmp_path / "registries.conf"), registry, running.address),
         registry, REPO, "v1", dest, arch="amd64")
    assert dir_layers(dest) == image.layers["amd64"]
    assert stats(running)["bytes_from_source"] == 0


@needs_registry
@pytest.mark.time_limit(120)
def test_blobs_imported_into_a_supernode_cost_the_registry_no_blob_bytes_while_it_answers(
        tmp_path, registry, image, supernode_factory, client_factory, daemons):
    archive = str(tmp_path / "site.tar")
    export(["%s/%s:v1" % (registry.host, REPO)], archive, client_factory(), plain_http=True)
    registry.settle()
    assert len(registry.blob_gets()) == len(image.blob_sizes)
    sent = registry.blob_bytes()
    sn_dir = tmp_path / "supernode"
    import_archive(archive, str(sn_dir), into="supernode")
    supernode = supernode_factory(data_dir=str(sn_dir))
    running = daemons.start(supernode=[supernode.address], registry_mirror=registry.url)
    dest = str(tmp_path / "pulled")
    pull(mirror_conf(str(tmp_path / "registries.conf"), registry, running.address),
         registry, REPO, "v1", dest, arch="arm64")
    assert dir_layers(dest) == image.layers["arm64"]
    # The supernode revalidated each imported blob with its digest as ETag: 304, no body.
    pulled = len(image.layers["arm64"]) + 1   # its layers and its config
    registry.settle()
    assert len(registry.blob_not_modified()) == pulled
    assert registry.blob_bytes() == sent and len(registry.blob_gets()) == len(image.blob_sizes)


@needs_registry
@pytest.mark.time_limit(60)
def test_the_mirror_serves_imported_content_only_while_the_registry_is_unreachable(
        tmp_path, registry, image, client_factory, daemons):
    archive = str(tmp_path / "site.tar")
    export(["%s/%s:v1" % (registry.host, REPO)], archive, client_factory(), plain_http=True)
    data_dir = tmp_path / "daemon"
    import_archive(archive, str(data_dir), into="daemon")
    running = daemons.start(data_dir=str(data_dir), registry_mirror=registry.url)
    layer = image.layers["amd64"][0]
    # A registry that answers is believed: this repository does not hold the layer.
    status, _, _ = fetch(running.address, "GET", "/v2/other/repo/blobs/" + layer)
    assert status == 404
    status, headers, body = fetch(running.address, "GET", "/v2/%s/manifests/v1" % REPO,
                                  {"Accept": "application/vnd.oci.image.index.v1+json"})
    assert status == 200 and headers["docker-content-digest"] == image.index_digest
    registry.stop()
    status, headers, body = fetch(running.address, "GET", "/v2/%s/manifests/v1" % REPO)
    assert status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == image.index_digest
    assert headers["content-type"] == "application/vnd.oci.image.index.v1+json"
    status, _, body = fetch(running.address, "GET", "/v2/%s/blobs/%s" % (REPO, layer))
    assert status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == layer
    status, _, _ = fetch(running.address, "GET", "/v2/%s/manifests/v2" % REPO)
    assert status == 502   # not imported: the outage's answer, as before


@pytest.mark.time_limit(60)
def test_files_exported_in_parts_are_served_by_a_fresh_supernode_with_their_origin_stopped(
        tmp_path, origin, supernode, supernode_factory, client_factory, downloads):
    first = origin.add("tools.bin", content(3 * MiB + 12345, seed=71))
    second = origin.add("empty.bin", b"")
    archive = str(tmp_path / "files.tar")
    summary = export([first.url, second.url], archive, client_factory([supernode.address]),
                     part_size=1 * MiB)
    assert len(summary.parts) == 4 and all(os.path.getsize(p) <= MiB for p in summary.parts)
    assert not os.path.exists(archive)
    assert sum(os.path.getsize(p) for p in summary.parts) == summary.archive_bytes

    data_dir = tmp_path / "airgapped-supernode"
    imported = import_archive(summary.parts[0], str(data_dir), into="supernode")
    assert imported.files == 2
    origin.stop()
    fresh = supernode_factory(data_dir=str(data_dir))
    for src, name in ((first, "one.bin"), (second, "two.bin")):
        result = client_factory([fresh.address], no_back_source=True).download(
            src.url, str(downloads / name))
        assert sha256_file(str(downloads / name)) == src.sha256
        assert result.bytes_from_source == 0 and result.via == "p2p"


@pytest.mark.time_limit(60)
def test_files_imported_into_every_cluster_member_are_served_by_their_owners_with_the_origin_stopped(
        tmp_path, origin, supernode_factory, client_factory, downloads):
    members = reserve_ports(2)
    names = ["c%d.bin" % i for i in range(100)]
    owned = [next(n for n in names if rendezvous_owner(task_id(origin.url(n)), members) == m)
             for m in members]   # one file owned by each member
    sources = [origin.add(name, content(MiB + i, seed=80 + i)) for i, name in enumerate(owned)]
    archive = str(tmp_path / "files.tar")
    export([src.url for src in sources], archive, client_factory())
    for i in range(2):
        import_archive(archive, str(tmp_path / ("m%d" % i)), into="supernode")
    origin.stop()
    for i, address in enumerate(members):
        supernode_factory(data_dir=tmp_path / ("m%d" % i), listen=address, cluster=[",".join(members)],
                          cluster_secret="s3cret-s3cret-s3cret")
    for i, src in enumerate(sources):   # asked of the member that does not own it: redirected
        out = str(downloads / ("c%d.bin" % i))
        result = client_factory([members[1 - members.index(rendezvous_owner(
            task_id(src.url), members))]], no_back_source=True).download(src.url, out)
        assert sha256_file(out) == src.sha256 and result.bytes_from_source == 0


@pytest.mark.time_limit(60)
def test_files_imported_into_a_daemon_are_handed_out_to_a_get_naming_their_digest(
        tmp_path, origin, client_factory, daemons, downloads):
    from daemons import handoff_client
    src = origin.add("tool.bin", content(MiB + 7, seed=72))
    archive = str(tmp_path / "files.tar")
    export([src.url], archive, client_factory())
    data_dir = tmp_path / "daemon"
    import_archive(archive, str(data_dir), into="daemon")
    origin.stop()
    running = daemons.start(data_dir=str(data_dir))
    out = str(downloads / "tool.bin")
    result = handoff_client(running).download(
        HandoffRequest(src.url, out, digest="sha256:" + src.sha256), 20)
    assert sha256_file(out) == src.sha256 and result.bytes_from_cache == src.size


def test_an_import_into_the_data_dir_of_a_running_program_is_refused_and_changes_nothing(
        tmp_path, files_archive, supernode_factory, daemons):
    path, _ = files_archive
    sn_dir = tmp_path / "sn"
    running = supernode_factory(data_dir=sn_dir)
    before = _tree(sn_dir)
    with pytest.raises(errors.DataDirInUse, match="in use by dfly supernode") as refused:
        import_archive(path, str(sn_dir), into="supernode")
    assert refused.value.exit_code == 2 and "\n" not in str(refused.value)
    assert _tree(sn_dir) == before
    running.stop()
    assert import_archive(path, str(sn_dir), into="supernode").files == 2   # stopped: it takes
    daemon_dir = str(tmp_path / "d")
    daemons.start(data_dir=daemon_dir)
    with pytest.raises(errors.DataDirInUse, match="in use by dfly daemon"):
        import_archive(path, daemon_dir, into="daemon")


# damaged archives -----------------------------------------------------------------------

@pytest.fixture
def files_archive(tmp_path, origin, client_factory):
    """An archive of two files, and the digest of the first."""
    one = origin.add("one.bin", content(600 << 10, seed=73))
    two = origin.add("two.bin", content(300 << 10, seed=74))
    path = str(tmp_path / "files.tar")
    export([one.url, two.url], path, client_factory())
    return path, "sha256:" + one.sha256


def _offset_of(path: str, name: str) -> int:
    with tarfile.open(path) as tar:
        return tar.getmember(name).offset_data


def _check_refused(path: str, data_dir, match: str) -> None:
    before = _tree(data_dir)
    with pytest.raises(DamagedArchive, match=match) as caught:
        import_archive(path, str(data_dir), into="supernode")
    assert caught.value.exit_code == 4
    assert _tree(data_dir) == before
    assert [n for n in os.listdir(str(data_dir)) if n.startswith(".import")] == []


def test_an_archive_with_a_damaged_blob_is_refused_naming_it_and_nothing_is_imported(
        tmp_path, files_archive):
    path, digest = files_archive
    data_dir = tmp_path / "sn"
    (data_dir / "tasks").mkdir(parents=True)
    at = _offset_of(path, ocilayout.blob_name(digest)) + 1000
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))
    _check_refused(path, data_dir, "entry %s does not match its digest" % ocilayout.blob_name(digest))


@pytest.mark.parametrize("cut", ["in_first_blob", "before_index", "in_index", "before_end"])
def test_a_truncated_archive_is_refused_naming_where_and_nothing_is_imported(
        tmp_path, files_archive, cut):
    path, digest = files_archive
    data_dir = tmp_path / "sn"
    (data_dir / "tasks").mkdir(parents=True)
    index_at = _offset_of(path, ocilayout.INDEX_NAME)
    size = os.path.getsize(path)
    keep, match = {"in_first_blob": (_offset_of(path, ocilayout.blob_name(digest)) + 5000,
                                     "truncated in entry %s" % ocilayout.blob_name(digest)),
                   "before_index": (index_at - 512, "truncated after entry blobs/sha256/"),
                   "in_index": (index_at + 10, "truncated in entry index.json"),
                   "before_end": (size - 1024, "truncated after entry dfly-files.json")}[cut]
    with open(path, "r+b") as f:
        f.truncate(keep)
    _check_refused(path, data_dir, match)


MISSING_BLOB = "sha256:" + hashlib.sha256(b"not here").hexdigest()


@pytest.mark.parametrize("field,value,words", [
    ("digest", MISSING_BLOB, r"entry %s missing" % ocilayout.blob_name(MISSING_BLOB)),
    ("size", 5, r"file .*two.bin: entry blobs/sha256/\w+ is 307200 bytes where 5 are stated"),
    ("url", "http://[::1", r"dfly-files.json: files\[1\]: .*URL")])
def test_an_archive_whose_file_index_does_not_match_its_blobs_is_refused(
        tmp_path, files_archive, field, value, words):
    path, digest = files_archive
    out = str(tmp_path / "edited.tar")
    with tarfile.open(path) as src, tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name == ocilayout.FILES_NAME:
                doc = json.loads(data)
                doc["files"][1][field] = value
                data = json.dumps(doc).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    data_dir = tmp_path / "sn"
    (data_dir / "tasks").mkdir(parents=True)
    _check_refused(out, data_dir, words)


def test_a_failed_export_leaves_nothing_at_the_target_names(tmp_path, origin, client_factory):
    good = origin.add("good.bin", content(2 * MiB, seed=75))
    bad = origin.add("bad.bin", content(MiB, seed=76))
    origin.fault("bad.bin", status=404)
    target = str(tmp_path / "out.tar")
    with pytest.raises(errors.SourceError, match="404"):
        export([good.url, bad.url], target, client_factory(), part_size=MiB)
    assert os.listdir(str(tmp_path)) == [n for n in os.listdir(str(tmp_path))
                                         if not n.startswith("out.tar")]


@needs_registry
@pytest.mark.time_limit(60)
def test_an_image_archive_missing_a_layer_is_refused_naming_the_layer(
        tmp_path, registry, image, client_factory):
    archive = str(tmp_path / "site.tar")
    export(["%s/%s:v1" % (registry.host, REPO)], archive, client_factory(), plain_http=True)
    layer = image.layers["arm64"][1]
    out = str(tmp_path / "edited.tar")
    with tarfile.open(archive) as src, tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as dst:
        for member in src.getmembers():
            if member.name != ocilayout.blob_name(layer):
                dst.addfile(member, src.extractfile(member))
    data_dir = tmp_path / "daemon"
    (data_dir / "daemon").mkdir(parents=True)
    before = _tree(data_dir)
    with pytest.raises(DamagedArchive, match=r"image .*team/app:v1 \(manifest %s\) blob: %s is not in "
                       r"the archive" % (image.manifests["arm64"], layer)):
        import_archive(out, str(data_dir))
    assert _tree(data_dir) == before
