"""The export archive, as rules: tar headers, the OCI image layout's documents,
dfly's file index, and the names of an archive's parts. Pure: values in, values out.

An archive is one tar stream (split, with --part-size, into FILE.000,
FILE.001, ... cut at any byte):

    oci-layout                 {"imageLayoutVersion": "1.0.0"}
    blobs/sha256/<hex>         every manifest, index, config, layer and file, by digest
    index.json                 an OCI index: one entry per image, annotated with its name
    dfly-files.json            {"dfly_files": 1, "files": [{"url", "digest", "size"}]}

So `skopeo copy oci-archive:FILE:NAME` (and any OCI layout reader, once
unpacked) reads the images; the files are dfly's own. The two documents come
last: a file's digest is known only once its bytes went by. Every header is
one 512-byte GNU tar block (a name under 100 bytes, any size), so a writer can
put a placeholder first and the real header back once the size is known.
"""
import json
import re
import tarfile
from typing import Dict, List, NamedTuple, Optional

from dfly.protocol import oci
from dfly.protocol.preheat import INDEX_TYPES, MANIFEST_TYPES

BLOCK = 512
LAYOUT_NAME = "oci-layout"
INDEX_NAME = "index.json"
FILES_NAME = "dfly-files.json"
LAYOUT_BODY = b'{"imageLayoutVersion": "1.0.0"}'
OCI_INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
REPOSITORY = "io.dfly.repository"   # the repository and tag or digest, as the mirror sees them
REFERENCE = "io.dfly.reference"
SOURCE = "io.dfly.source"           # the manifest URL it was exported from
BLOB_NAME = re.compile(r"\Ablobs/(sha256|sha512)/([0-9a-f]{64}|[0-9a-f]{128})\Z")
MAX_DOCUMENT_BYTES = 16 << 20       # index.json or dfly-files.json
MAX_ENTRIES = 100000
PART_SUFFIX = re.compile(r"\.(\d{3,})\Z")


class BadArchive(ValueError):
    """The archive is not one dfly can import; the message names the entry."""


class Image(NamedTuple):
    name: str          # REGISTRY/REPOSITORY:TAG (or @DIGEST), as a user types it
    repository: str
    reference: str     # tag or digest
    digest: str        # of the top manifest or index
    media_type: str
    size: int
    source: str = ""   # the manifest URL


class File(NamedTuple):
    url: str
    digest: str
    size: int


# tar ------------------------------------------------------------------------------------

def tar_header(name: str, size: int, mtime: int = 0) -> bytes:
    """One 512-byte header of a regular file (GNU format: a size past 8 GiB is base-256)."""
    if len(name.encode("utf-8")) >= 100:
        raise ValueError("tar name too long for one header block: %r" % name)
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    out = info.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="strict")
    assert len(out) == BLOCK
    return out


def padding(size: int) -> int:
    """Zero bytes after a member of `size` bytes, up to the next block."""
    return -size % BLOCK


END = b"\0" * (2 * BLOCK)   # two zero blocks end a tar stream


class Header(NamedTuple):
    name: str
    size: int
    kind: bytes   # tarfile's type: REGTYPE, DIRTYPE, ...


def parse_header(block: bytes, after: str) -> Optional[Header]:
    """The member a header block announces; None for a zero block (the end).
    `after`: the entry before it, named when this one is bad."""
    if len(block) < BLOCK:
        raise BadArchive("the archive is truncated after %s" % after)
    if block == b"\0" * BLOCK:
        return None
    try:
        info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError as e:
        raise BadArchive("bad tar header after %s: %s" % (after, e))
    kind = info.type
    if kind == tarfile.AREGTYPE:
        kind = tarfile.REGTYPE
    return Header(info.name.lstrip("./") if info.name.startswith("./") else info.name,
                  info.size, kind)


def blob_name(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return "blobs/%s/%s" % (algorithm, hexdigest)


def digest_of_name(name: str) -> Optional[str]:
    """The digest a blob's name says it is; None for any other name."""
    m = BLOB_NAME.match(name)
    if not m or len(m.group(2)) != (64 if m.group(1) == "sha256" else 128):
        return None
    return "%s:%s" % (m.group(1), m.group(2))


# documents ------------------------------------------------------------------------------

def layout_index(images: List[Image]) -> bytes:
    """index.json: one descriptor per image, annotated so skopeo (`oci-archive:FILE:NAME`),
    containerd and dfly's import each find it by name."""
    entries = []
    for image in images:
        entries.append({"mediaType": image.media_type, "digest": image.digest, "size": image.size,
                        "annotations": {REF_NAME: image.name, CONTAINERD_NAME: image.name,
                                        REPOSITORY: image.repository, REFERENCE: image.reference,
                                        SOURCE: image.source}})
    return _dump({"schemaVersion": 2, "mediaType": OCI_INDEX_TYPE, "manifests": entries})


def files_index(files: List[File]) -> bytes:
    return _dump({"dfly_files": 1, "files": [f._asdict() for f in files]})


def _dump(doc: dict) -> bytes:
    return json.dumps(doc, indent=1, sort_keys=True).encode("utf-8")


def parse_layout_index(body: bytes) -> List[Image]:
    doc = _load(body, INDEX_NAME)
    entries = doc.get("manifests")
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        raise BadArchive("%s: 'manifests' must be a list" % INDEX_NAME)
    out = []
    for i, entry in enumerate(entries):
        where = "%s: manifests[%d]" % (INDEX_NAME, i)
        if not isinstance(entry, dict):
            raise BadArchive("%s is not an object" % where)
        digest, size, media_type = entry.get("digest"), entry.get("size"), entry.get("mediaType")
        if not isinstance(digest, str) or not oci.DIGEST.match(digest) or not _is_size(size):
            raise BadArchive("%s has no valid digest and size" % where)
        if media_type not in INDEX_TYPES + MANIFEST_TYPES:
            raise BadArchive("%s: media type %r is not an image manifest or index"
                             % (where, str(media_type)[:100]))
        notes = entry.get("annotations") if isinstance(entry.get("annotations"), dict) else {}
        repository, reference = _name_of(notes, where)
        out.append(Image(str(notes.get(REF_NAME, "")), repository, reference, digest, media_type,
                         size, str(notes.get(SOURCE, ""))))
    return out


def _name_of(notes: Dict[str, str], where: str):
    """(repository, tag or digest): dfly's own annotations, else the full name."""
    repository, reference = notes.get(REPOSITORY), notes.get(REFERENCE)
    if not (isinstance(repository, str) and isinstance(reference, str)):
        repository, reference = split_name(str(notes.get(CONTAINERD_NAME) or notes.get(REF_NAME) or ""))
    try:
        found = oci.parse_path("/v2/%s/manifests/%s" % (repository, reference))
    except oci.BadName as e:
        raise BadArchive("%s: bad image name %r: %s" % (where, repository, e))
    if found is None or found.kind != "manifest" or (found.name, found.reference) != (repository, reference):
        raise BadArchive("%s: no image name (annotation %s or %s)" % (where, REPOSITORY, REF_NAME))
    return found.name, found.reference


def split_name(name: str):
    """("team/app", "v1") of "registry.example:5000/team/app:v1" (a digest after @)."""
    if "@" in name:
        rest, reference = name.split("@", 1)
    elif ":" in name.rsplit("/", 1)[-1]:
        rest, reference = name.rsplit(":", 1)
    else:
        rest, reference = name, "latest"
    first, _, tail = rest.partition("/")
    if tail and ("." in first or ":" in first or first == "localhost"):
        rest = tail
    return rest, reference


def parse_files_index(body: bytes) -> List[File]:
    doc = _load(body, FILES_NAME)
    files = doc.get("files")
    if doc.get("dfly_files") != 1 or not isinstance(files, list) or len(files) > MAX_ENTRIES:
        raise BadArchive("%s: not a dfly file index of version 1" % FILES_NAME)
    out = []
    for i, entry in enumerate(files):
        where = "%s: files[%d]" % (FILES_NAME, i)
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str) or not entry["url"]:
            raise BadArchive("%s has no url" % where)
        digest, size = entry.get("digest"), entry.get("size")
        if not isinstance(digest, str) or not oci.DIGEST.match(digest) or not _is_size(size):
            raise BadArchive("%s has no valid digest and size" % where)
        out.append(File(entry["url"], digest, size))
    return out


def _load(body: bytes, name: str) -> dict:
    if len(body) > MAX_DOCUMENT_BYTES:
        raise BadArchive("%s is over %d bytes" % (name, MAX_DOCUMENT_BYTES))
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):   # [[[[... nested past the stack
        raise BadArchive("%s is not JSON" % name)
    if not isinstance(doc, dict):
        raise BadArchive("%s is not a JSON object" % name)
    return doc


def _is_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# parts ----------------------------------------------------------------------------------

def part_name(path: str, number: int) -> str:
    return "%s.%03d" % (path, number)


def first_part(path: str) -> Optional[str]:
    """The archive's name without the part suffix, when `path` names part 000."""
    m = PART_SUFFIX.search(path)
    if m and int(m.group(1)) == 0:
        return path[:m.start()]
    return None
