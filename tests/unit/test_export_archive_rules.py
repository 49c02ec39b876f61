"""The export archive's rules (protocol/ocilayout.py): one-block tar headers that
tarfile reads back at any size, the documents' round trips and the first bad
field they name, image names split as users type them, part names."""
import io
import json
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfly.protocol import ocilayout

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, (8 << 30) - 1, 8 << 30, 3 << 40])
def test_a_header_is_one_block_that_tarfile_reads_back_at_any_size(size):
    block = ocilayout.tar_header(ocilayout.blob_name(DIGEST), size)
    assert len(block) == ocilayout.BLOCK
    info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
    assert (info.name, info.size, info.type) == ("blobs/sha256/" + "ab" * 32, size, tarfile.REGTYPE)
    assert ocilayout.parse_header(block, "x") == ocilayout.Header(info.name, size, tarfile.REGTYPE)


def test_members_written_with_the_headers_make_a_tar_that_tarfile_lists():
    out = io.BytesIO()
    for name, data in (("oci-layout", ocilayout.LAYOUT_BODY), ("index.json", b"{}" * 300)):
        out.write(ocilayout.tar_header(name, len(data)) + data + b"\0" * ocilayout.padding(len(data)))
    out.write(ocilayout.END)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        assert [(m.name, m.size) for m in tar.getmembers()] == [("oci-layout", 31), ("index.json", 600)]


def test_a_zero_block_is_the_end_and_a_short_one_names_the_entry_before_it():
    assert ocilayout.parse_header(b"\0" * 512, "x") is None
    with pytest.raises(ocilayout.BadArchive, match="truncated after entry index.json"):
        ocilayout.parse_header(b"\0" * 100, "entry index.json")
    with pytest.raises(ocilayout.BadArchive, match="bad tar header after entry oci-layout"):
        ocilayout.parse_header(b"x" * 512, "entry oci-layout")


def test_a_name_too_long_for_one_block_is_refused():
    with pytest.raises(ValueError):
        ocilayout.tar_header("a" * 100, 1)


@pytest.mark.parametrize("name,digest", [
    ("blobs/sha256/" + "0f" * 32, "sha256:" + "0f" * 32),
    ("blobs/sha512/" + "0f" * 64, "sha512:" + "0f" * 64),
    ("blobs/sha256/" + "0f" * 31, None), ("blobs/sha512/" + "0f" * 32, None),
    ("blobs/sha256/" + "0F" * 32, None), ("blobs/md5/" + "0f" * 16, None),
    ("../blobs/sha256/" + "0f" * 32, None), ("index.json", None)])
def test_only_a_well_formed_blob_name_is_a_digest(name, digest):
    assert ocilayout.digest_of_name(name) == digest


def _image(**changes):
    fields = dict(name="127.0.0.1:5000/team/app:v1", repository="team/app", reference="v1",
                  digest=DIGEST, media_type="application/vnd.oci.image.index.v1+json", size=300,
                  source="http://127.0.0.1:5000/v2/team/app/manifests/v1")
    fields.update(changes)
    return ocilayout.Image(**fields)


def test_the_layout_index_names_each_image_for_skopeo_containerd_and_import():
    body = ocilayout.layout_index([_image()])
    entry = json.loads(body)["manifests"][0]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "127.0.0.1:5000/team/app:v1"
    assert entry["annotations"]["io.containerd.image.name"] == "127.0.0.1:5000/team/app:v1"
    assert ocilayout.parse_layout_index(body) == [_image()]


def test_an_index_without_dfly_annotations_is_read_by_its_full_name():
    doc = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": DIGEST, "size": 9,
        "annotations": {"org.opencontainers.image.ref.name": "registry.example:5000/team/app@" + DIGEST}}]}
    image = ocilayout.parse_layout_index(json.dumps(doc).encode())[0]
    assert (image.repository, image.reference) == ("team/app", DIGEST)


@pytest.mark.parametrize("name,split", [
    ("registry.example:5000/team/app:v1", ("team/app", "v1")),
    ("localhost/app", ("app", "latest")), ("team/app:v2", ("team/app", "v2")),
    ("app@" + DIGEST, ("app", DIGEST))])
def test_a_full_name_splits_into_repository_and_reference(name, split):
    assert ocilayout.split_name(name) == split


@pytest.mark.parametrize("change,words", [
    ({"digest": "sha256:short"}, "manifests[0] has no valid digest and size"),
    ({"size": -1}, "manifests[0] has no valid digest and size"),
    ({"mediaType": "text/plain"}, "manifests[0]: media type 'text/plain'"),
    ({"annotations": {}}, "manifests[0]: no image name"),
    ({"annotations": {"io.dfly.repository": "Team/App", "io.dfly.reference": "v1"}},
     "manifests[0]: bad image name"),
    ({"annotations": {"io.dfly.repository": "team", "io.dfly.reference": "app/manifests/v1"}},
     "manifests[0]: no image name"),
    ({"annotations": {"io.dfly.repository": "team", "io.dfly.reference": "x/blobs/" + DIGEST}},
     "manifests[0]: no image name")])
def test_a_bad_layout_index_names_the_entry(change, words):
    entry = json.loads(ocilayout.layout_index([_image()]))["manifests"][0]
    entry.update(change)
    with pytest.raises(ocilayout.BadArchive, match=words.replace("[", r"\[").replace("]", r"\]")):
        ocilayout.parse_layout_index(json.dumps({"manifests": [entry]}).encode())


def test_the_files_index_round_trips_and_names_a_bad_entry():
    files = [ocilayout.File("http://origin/a.bin", DIGEST, 5)]
    assert ocilayout.parse_files_index(ocilayout.files_index(files)) == files
    with pytest.raises(ocilayout.BadArchive, match=r"files\[1\] has no url"):
        ocilayout.parse_files_index(json.dumps({"dfly_files": 1, "files": [
            files[0]._asdict(), {"digest": DIGEST, "size": 1}]}).encode())
    with pytest.raises(ocilayout.BadArchive, match="not JSON"):
        ocilayout.parse_files_index(b"{")
    with pytest.raises(ocilayout.BadArchive, match="version 1"):
        ocilayout.parse_files_index(b'{"dfly_files": 2, "files": []}')


def test_part_names_and_the_first_part():
    assert ocilayout.part_name("/x/site.tar", 0) == "/x/site.tar.000"
    assert ocilayout.part_name("/x/site.tar", 1234) == "/x/site.tar.1234"
    assert ocilayout.first_part("/x/site.tar.000") == "/x/site.tar"
    assert ocilayout.first_part("/x/site.tar.001") is None
    assert ocilayout.first_part("/x/site.tar") is None


# hostile archives: each parser returns a value or raises BadArchive, nothing else -------

FAST = settings(max_examples=80, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner,
                                                                         max_size=3)), max_leaves=10)
VALID_ENTRY = json.loads(ocilayout.layout_index([_image()]))["manifests"][0]


@FAST
@given(st.binary(min_size=0, max_size=600),
       st.integers(min_value=0, max_value=511), st.binary(min_size=1, max_size=8))
def test_any_header_block_is_a_header_the_end_or_bad_archive(junk, at, patch):
    good = bytearray(ocilayout.tar_header("oci-layout", 31))
    good[at:at + len(patch)] = patch
    for block in (junk, bytes(good[:512])):
        try:
            header = ocilayout.parse_header(block, "x")
        except ocilayout.BadArchive:
            continue
        assert header is None or (isinstance(header.name, str) and header.size >= 0)


@FAST
@given(st.fixed_dictionaries({}, optional={k: st.one_of(st.just(v), json_values)
                                           for k, v in VALID_ENTRY.items()}),
       st.one_of(st.just(None), json_values))
def test_any_layout_index_is_images_or_bad_archive(entry, notes):
    if notes is not None:
        entry["annotations"] = notes
    for body in (json.dumps({"manifests": [entry]}).encode(), json.dumps(entry).encode()):
        try:
            images = ocilayout.parse_layout_index(body)
        except ocilayout.BadArchive:
            continue
        assert all(isinstance(i.repository, str) and i.size >= 0 for i in images)


@FAST
@given(st.one_of(json_values, st.fixed_dictionaries({"dfly_files": st.just(1), "files": st.lists(
    st.fixed_dictionaries({}, optional={"url": json_values, "digest": st.one_of(st.just(DIGEST),
                                                                                json_values),
                                        "size": json_values}), max_size=3)})))
def test_any_files_index_is_files_or_bad_archive(doc):
    try:
        files = ocilayout.parse_files_index(json.dumps(doc).encode())
    except ocilayout.BadArchive:
        return
    assert all(isinstance(f.url, str) and f.size >= 0 for f in files)
