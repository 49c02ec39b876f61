"""The export archive's documents and headers at their edges (the survivors of a
mutation run of protocol/ocilayout.py, docs/TESTING.md): what an archive from
another tool may carry (old-style regular files, names that are not UTF-8,
`./` prefixes, a registry host in the image name), the limits kept inclusive,
and the entry each refusal names."""
import json
import tarfile

import pytest

from dfly.protocol import ocilayout
from dfly.protocol.ocilayout import BadArchive

DIGEST = "sha256:" + "ab" * 32


def header_block(name: bytes, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo("placeholder")
    info.type = kind
    block = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    block[:100] = name.ljust(100, b"\0")
    block[148:156] = b"        "   # the checksum is summed with its own field as spaces
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def test_a_header_is_written_with_mode_0644_and_time_0_by_default():
    info = tarfile.TarInfo.frombuf(ocilayout.tar_header("blobs/x", 3), "utf-8", "strict")
    assert (info.mode, info.mtime) == (0o644, 0)


def test_a_name_too_long_for_one_header_is_refused_in_words():
    with pytest.raises(ValueError, match="^tar name too long for one header block"):
        ocilayout.tar_header("d/" * 200, 1)


def test_an_old_style_regular_file_is_a_regular_file_and_a_directory_stays_one():
    assert ocilayout.parse_header(header_block(b"f", tarfile.AREGTYPE), "x").kind == tarfile.REGTYPE
    assert ocilayout.parse_header(header_block(b"d/", tarfile.DIRTYPE), "x").kind == tarfile.DIRTYPE


@pytest.mark.parametrize("name, read", [("./Xfile", "Xfile"), ("./blobs/a", "blobs/a"),
                                        (".profile", ".profile"), ("..x", "..x")])
def test_only_a_leading_dot_slash_is_taken_off_a_member_name(name, read):
    assert ocilayout.parse_header(header_block(name.encode()), "x").name == read


def test_a_member_name_that_is_not_utf8_is_read_not_refused():
    assert ocilayout.parse_header(header_block(b"caf\xe9"), "x").name == "caf\udce9"


def test_the_layout_index_is_written_with_sorted_keys_one_space_indented():
    assert ocilayout.layout_index([]) == (b'{\n "manifests": [],\n "mediaType": "%s",\n "schemaVersion": 2\n}'
                                          % ocilayout.OCI_INDEX_TYPE.encode())


@pytest.mark.parametrize("parse, name", [(ocilayout.parse_layout_index, "index.json"),
                                         (ocilayout.parse_files_index, "dfly-files.json")])
def test_a_document_refusal_names_the_document(parse, name):
    with pytest.raises(BadArchive, match="^%s is not JSON$" % name):
        parse(b"{")
    with pytest.raises(BadArchive, match="^%s is not a JSON object$" % name):
        parse(b"[]")


def test_a_document_of_exactly_the_size_limit_is_read_and_a_longer_one_refused():
    body = b'{"dfly_files": 1, "files": []}'.ljust(ocilayout.MAX_DOCUMENT_BYTES)
    assert ocilayout.parse_files_index(body) == []
    with pytest.raises(BadArchive, match="^dfly-files.json is over %d bytes$" % ocilayout.MAX_DOCUMENT_BYTES):
        ocilayout.parse_files_index(body + b" ")


def test_a_files_index_of_exactly_max_entries_is_read():
    entry = {"url": "http://o/f", "digest": DIGEST, "size": 1}
    body = json.dumps({"dfly_files": 1, "files": [entry] * ocilayout.MAX_ENTRIES}).encode()
    assert len(ocilayout.parse_files_index(body)) == ocilayout.MAX_ENTRIES


@pytest.mark.parametrize("entry", [{"url": "http://o/f", "digest": DIGEST, "size": -1},
                                   {"url": "http://o/f", "digest": "md5:00", "size": 1}])
def test_a_file_needs_both_a_valid_digest_and_a_valid_size(entry):
    body = json.dumps({"dfly_files": 1, "files": [entry]}).encode()
    with pytest.raises(BadArchive, match=r"^dfly-files.json: files\[0\] has no valid digest and size$"):
        ocilayout.parse_files_index(body)


def test_an_empty_file_is_a_file_and_files_that_are_no_list_are_refused():
    entry = {"url": "http://o/f", "digest": DIGEST, "size": 0}
    assert ocilayout.parse_files_index(json.dumps({"dfly_files": 1, "files": [entry]}).encode())[0].size == 0
    with pytest.raises(BadArchive):
        ocilayout.parse_files_index(b'{"dfly_files": 1, "files": {}}')


def index(*entries) -> bytes:
    return json.dumps({"manifests": list(entries)}).encode()


def manifest(**notes) -> dict:
    return {"digest": DIGEST, "size": 10, "annotations": notes,
            "mediaType": "application/vnd.oci.image.manifest.v1+json"}


def test_an_image_without_a_ref_name_or_source_has_empty_ones():
    image, = ocilayout.parse_layout_index(index(manifest(**{ocilayout.REPOSITORY: "app",
                                                            ocilayout.REFERENCE: "v1"})))
    assert (image.name, image.source) == ("", "")


@pytest.mark.parametrize("notes", [{ocilayout.REPOSITORY: "other"},   # without its reference
                                   {}])
def test_an_image_named_only_by_containerd_or_half_by_dfly_is_named_by_the_full_name(notes):
    notes = dict(notes, **{ocilayout.CONTAINERD_NAME: "registry.example/team/app:v1"})
    image, = ocilayout.parse_layout_index(index(manifest(**notes)))
    assert (image.repository, image.reference) == ("team/app", "v1")


@pytest.mark.parametrize("body, refusal", [
    (b'{"manifests": {}}', r"^index.json: 'manifests' must be a list$"),
    (b'{"manifests": [5]}', r"^index.json: manifests\[0\] is not an object$"),
])
def test_a_layout_index_refusal_names_the_entry(body, refusal):
    with pytest.raises(BadArchive, match=refusal):
        ocilayout.parse_layout_index(body)


@pytest.mark.parametrize("name, split", [
    ("registry.example/team/app:v1", ("team/app", "v1")),
    ("myhost:5000/app:v1", ("app", "v1")),
    ("localhost:5000/team/app", ("team/app", "latest")),
    ("app@x@y", ("app", "x@y")),
])
def test_an_image_name_is_split_as_users_type_it(name, split):
    assert ocilayout.split_name(name) == split
