"""The OCI distribution API's read path, as paths: which request is which. Pure.

    /v2/                                   the API base (version check, auth probe)
    /v2/<name>/manifests/<tag or digest>   manifest, image index or manifest list
    /v2/<name>/blobs/<digest>              layer or config, content-addressed
    /v2/<name>/tags/list, /v2/_catalog, /v2/<name>/referrers/<digest>   listings

Names, tags and digests are checked against the spec's grammar before anything
is built from them, so a request can never smuggle a path or a query upstream.
"""
import re
from typing import NamedTuple, Optional

NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME = re.compile(r"^%s(?:/%s)*$" % (NAME_COMPONENT, NAME_COMPONENT))
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST = re.compile(r"^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
MAX_NAME_LEN = 255

_BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_LISTING = re.compile(r"^/v2/(?:_catalog|(?P<name>.+)/(?:tags/list|referrers/[^/]+))$")


class BadName(ValueError):
    """A repository name, tag or digest the spec does not allow (400 NAME_INVALID etc.)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class RegistryPath(NamedTuple):
    kind: str            # "base", "manifest", "blob" or "listing"
    name: str = ""
    reference: str = ""  # a tag or digest for manifests, the digest for blobs


def parse_path(path: str) -> Optional[RegistryPath]:
    """What `path` asks for; None when it is not a registry read path; BadName when malformed."""
    if path in ("/v2", "/v2/"):
        return RegistryPath("base")
    m = _BLOB.match(path)
    if m:
        _check_name(m.group("name"))
        if not DIGEST.match(m.group("digest")):
            raise BadName("DIGEST_INVALID", "blob reference must be a digest, e.g. sha256:<64 hex>")
        return RegistryPath("blob", m.group("name"), m.group("digest"))
    m = _MANIFEST.match(path)
    if m:
        _check_name(m.group("name"))
        ref = m.group("ref")
        if not (TAG.match(ref) or DIGEST.match(ref)):
            raise BadName("MANIFEST_INVALID" if ":" in ref else "TAG_INVALID",
                          "manifest reference must be a tag or a digest")
        return RegistryPath("manifest", m.group("name"), ref)
    m = _LISTING.match(path)
    if m:
        if m.group("name"):
            _check_name(m.group("name"))
        return RegistryPath("listing", m.group("name") or "")
    return None


def _check_name(name: str) -> None:
    if len(name) > MAX_NAME_LEN or not NAME.match(name):
        raise BadName("NAME_INVALID", "invalid repository name")
