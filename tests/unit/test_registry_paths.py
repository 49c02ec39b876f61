"""The registry read path as paths: what each request is, and which names,
tags and digests are refused before anything is built from them."""
import pytest

from dfly.protocol.oci import BadName, RegistryPath, parse_path

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("path,expected", [
    ("/v2/", RegistryPath("base")),
    ("/v2", RegistryPath("base")),
    ("/v2/library/alpine/blobs/" + DIGEST, RegistryPath("blob", "library/alpine", DIGEST)),
    ("/v2/a/b/c/manifests/v1.2_rc-3", RegistryPath("manifest", "a/b/c", "v1.2_rc-3")),
    ("/v2/app/manifests/" + DIGEST, RegistryPath("manifest", "app", DIGEST)),
    ("/v2/my.org/app__x/tags/list", RegistryPath("listing", "my.org/app__x")),
    ("/v2/_catalog", RegistryPath("listing")),
    ("/v2/app/referrers/" + DIGEST, RegistryPath("listing", "app")),
])
def test_read_paths_are_recognised(path, expected):
    assert parse_path(path) == expected


@pytest.mark.parametrize("path", ["/", "/v1/tasks", "/v2/app", "/v2/app/blobs/uploads/", "/v3/x"])
def test_other_paths_are_not_registry_reads(path):
    assert parse_path(path) is None


@pytest.mark.parametrize("path,code", [
    ("/v2/App/blobs/" + DIGEST, "NAME_INVALID"),
    ("/v2/../etc/blobs/" + DIGEST, "NAME_INVALID"),
    ("/v2/a//b/blobs/" + DIGEST, "NAME_INVALID"),
    ("/v2/a-/blobs/" + DIGEST, "NAME_INVALID"),
    ("/v2/" + "a" * 256 + "/blobs/" + DIGEST, "NAME_INVALID"),
    ("/v2/app/blobs/sha256:ABCD", "DIGEST_INVALID"),
    ("/v2/app/blobs/md5:" + "a" * 32, "DIGEST_INVALID"),
    ("/v2/app/blobs/latest", "DIGEST_INVALID"),
    ("/v2/app/manifests/.hidden", "TAG_INVALID"),
    ("/v2/app/manifests/" + "t" * 129, "TAG_INVALID"),
    ("/v2/app/manifests/sha256:short", "MANIFEST_INVALID"),
])
def test_malformed_names_tags_and_digests_are_refused_with_the_spec_code(path, code):
    with pytest.raises(BadName) as caught:
        parse_path(path)
    assert caught.value.code == code
