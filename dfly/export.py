"""`dfly export --output FILE (IMAGE|URL)...`: carry images and files to an
air-gapped site in one archive (format: protocol/ocilayout.py).

An image is resolved as a preheat resolves it (protocol/preheat.py: the
manifest URL, an index walked to its per-platform manifests, each manifest
fetched by digest checked against that digest); its manifests are read from
the registry, its config and layer blobs through the cluster as the tasks the
daemons' registry mirror uses (keyed by digest: what is cached there is not
fetched again), or from the registry itself without --supernode. A file is
downloaded as `dfly get` does. Everything is streamed into the archive as it
arrives (dfly.Client.stream, each blob checked against its digest before its
last bytes), so memory stays flat at any size; the archive is complete and
renamed to its name only at the end (dfly/archive.py).
"""
import hashlib
import json
import os
import time
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, NamedTuple, Optional, TextIO, Tuple

from dfly import __version__, errors
from dfly.archive import PartWriter
from dfly.protocol import oci, ocilayout
from dfly.protocol import preheat as rules
from dfly.protocol.digest import new_hasher
from dfly.protocol.units import human_bytes

if TYPE_CHECKING:   # (the CLI builds its parser from EXIT_CODES: this module loads light)
    from dfly.client import Client

EXIT_CODES = {0: "the archive is written", 1: "other error",
              2: "usage error (a bad target or flag)",
              3: "the registry or origin failed (its reason is printed); nothing written",
              4: "a blob or file did not match its digest; nothing written",
              5: "timeout", 6: "local I/O error (the archive cannot be written); nothing written",
              7: "no supernode reachable and --no-back-source",
              9: "a source denied by the source policy"}
MANIFEST_TIMEOUT_S = 30.0


class Manifest(NamedTuple):
    digest: str
    media_type: str
    body: bytes


class Planned(NamedTuple):
    """What one image target puts in the archive."""
    image: ocilayout.Image
    manifests: List[Manifest]        # the top one first
    blobs: List[rules.Blob]          # config and layers, each once
    ref: rules.ImageRef


class Summary(NamedTuple):
    parts: List[str]
    archive_bytes: int
    images: int
    blobs: int
    files: int
    bytes_from_source: int
    elapsed_s: float


def plan_image(url: str, headers: Dict[str, str], platforms: Iterable[str] = (),
               timeout_s: float = MANIFEST_TIMEOUT_S) -> Planned:
    """Read an image's manifests from its registry; what the archive will hold of it."""
    ref = rules.image_ref(url)
    top = _manifest(url, ref.reference, headers, timeout_s)
    walked = _walk(top, tuple(platforms))
    manifests, blobs = [top], list(walked.blobs)
    for digest in walked.manifests:
        child = _manifest(ref.manifest_url(digest), digest, headers, timeout_s)
        manifests.append(child)
        for blob in _walk(child, ()).blobs:
            if blob not in blobs:
                blobs.append(blob)
    if len(blobs) > rules.MAX_BLOBS:
        raise errors.SourceError("the image %s names more than %d blobs" % (url, rules.MAX_BLOBS))
    host = url.split("://", 1)[1].split("/", 1)[0]
    separator = "@" if oci.DIGEST.match(ref.reference) else ":"
    image = ocilayout.Image("%s/%s%s%s" % (host, ref.name, separator, ref.reference), ref.name,
                            ref.reference, top.digest, top.media_type, len(top.body), url)
    return Planned(image, manifests, blobs, ref)


def _walk(manifest: Manifest, platforms: Tuple[str, ...]) -> rules.Walked:
    try:
        return rules.walk(manifest.body, manifest.media_type, platforms)
    except rules.BadManifest as e:
        raise errors.SourceError("manifest %s: %s" % (manifest.digest, e))


def _manifest(url: str, reference: str, headers: Dict[str, str], timeout_s: float) -> Manifest:
    import http.client  # here, not at the top: `dfly --help` must not load urllib.request
    import urllib.error
    import urllib.request

    from dfly.protocol import redirects
    sent = dict(headers, Accept=rules.ACCEPT)
    sent.setdefault("User-Agent", "dfly-export/" + __version__)
    try:
        with redirects.urlopen(urllib.request.Request(url, headers=sent), timeout=timeout_s) as reply:
            body = reply.read(rules.MAX_MANIFEST_BYTES + 1)
            media_type = reply.headers.get("Content-Type", "").split(";")[0].strip()
    except urllib.error.HTTPError as e:
        e.close()
        raise errors.SourceError("the registry answered %d %s for %s" % (e.code, e.reason, url))
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
        raise errors.SourceError("cannot reach the registry for %s: %s" % (url, getattr(e, "reason", e)))
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if oci.DIGEST.match(reference):
        hasher = new_hasher(reference)
        hasher.update(body)
        digest = "%s:%s" % (hasher.name, hasher.hexdigest())
        if digest != reference:
            raise errors.DigestMismatch("the manifest the registry sent for %s does not match its "
                                        "digest" % url)
    media_type = _media_type(body, media_type)
    return Manifest(digest, media_type, body)


def _media_type(body: bytes, sent: str) -> str:
    """The manifest's own mediaType, else what the registry said (as walk() decides)."""
    try:
        kind = json.loads(body.decode("utf-8")).get("mediaType")
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
        kind = None
    return kind if isinstance(kind, str) and kind else sent


class TarWriter:
    """Members appended to a PartWriter; sizes and names completed in place."""

    def __init__(self, out: PartWriter):
        self.out = out

    def add(self, name: str, data: bytes) -> None:
        self.out.write(ocilayout.tar_header(name, len(data)))
        self.out.write(data)
        self.out.write(b"\0" * ocilayout.padding(len(data)))

    def add_stream(self, chunks: Iterator[bytes], size: Optional[int], name: Optional[str],
                   what: str) -> Tuple[str, int]:
        """A member from `chunks`: of `size` bytes when known (anything else is an error),
        named `name`, or by the digest of its bytes when None. (its name, its size)"""
        at = self.out.offset
        self.out.write(ocilayout.tar_header(name or ocilayout.blob_name("sha256:" + "0" * 64), size or 0))
        hasher = hashlib.sha256() if name is None else None
        written = 0
        try:
            for chunk in chunks:
                written += len(chunk)
                if size is not None and written > size:
                    raise errors.SourceError("%s: more than the %d bytes its manifest says" % (what, size))
                if hasher is not None:
                    hasher.update(chunk)
                self.out.write(chunk)
        finally:   # a download stopped early (this archive failed) ends now, not at collection
            getattr(chunks, "close", lambda: None)()
        if size is not None and written != size:
            raise errors.SourceError("%s: %d bytes where its manifest says %d" % (what, written, size))
        self.out.write(b"\0" * ocilayout.padding(written))
        if name is None:
            name = ocilayout.blob_name("sha256:" + hasher.hexdigest())
        self.out.patch(at, ocilayout.tar_header(name, written))
        return name, written

    def end(self) -> None:
        self.out.write(ocilayout.END)


def export(targets: List[str], path: str, client: "Client", part_size: int = 0,
           headers: Optional[Dict[str, str]] = None, platforms: Iterable[str] = (),
           plain_http: bool = False, log: Optional[TextIO] = None) -> Summary:
    """Write the archive of `targets` (images and URLs) to `path` (or its parts)."""
    started = time.monotonic()
    headers = headers or {}
    images, urls = [], []
    for target in targets:
        kind, url = rules.target_url(target, plain_http)
        if kind == "image":
            images.append(plan_image(url, headers, platforms))
            _say(log, "image %s: %d manifests, %d blobs" % (images[-1].image.name,
                                                           len(images[-1].manifests),
                                                           len(images[-1].blobs)))
        else:
            urls.append(url)
    writer = PartWriter(path, part_size)
    try:
        tar = TarWriter(writer)
        tar.add(ocilayout.LAYOUT_NAME, ocilayout.LAYOUT_BODY)
        blobs, from_images = _write_images(tar, images, client, headers, log)
        files, from_files = _write_files(tar, urls, client, headers, log)
        tar.add(ocilayout.INDEX_NAME, ocilayout.layout_index([p.image for p in images]))
        if files:
            tar.add(ocilayout.FILES_NAME, ocilayout.files_index(files))
        tar.end()
        total = writer.offset
        parts = writer.commit()
    except BaseException:
        writer.abort()
        raise
    return Summary(parts, total, len(images), blobs, len(files), from_images + from_files,
                   time.monotonic() - started)


def _write_images(tar: TarWriter, images: List[Planned], client: "Client", headers: Dict[str, str],
                  log: Optional[TextIO]) -> Tuple[int, int]:
    """Every manifest, then every config and layer blob, each once: (blobs, bytes from the
    source). A blob is the mirror's task: keyed by its digest, checked against it."""
    done, blobs, source = set(), 0, 0
    for planned in images:
        for manifest in planned.manifests:
            if manifest.digest not in done:
                done.add(manifest.digest)
                tar.add(ocilayout.blob_name(manifest.digest), manifest.body)
        for blob in planned.blobs:
            if blob.digest in done:
                continue
            done.add(blob.digest)
            chunks = client.stream(planned.ref.blob_url(blob.digest), digest=blob.digest,
                                   identifier=blob.digest, headers=headers)
            tar.add_stream(chunks, blob.size, ocilayout.blob_name(blob.digest), "blob " + blob.digest)
            source += _from_source(client)
            blobs += 1
            _say(log, "blob %s: %s" % (blob.digest, human_bytes(blob.size)))
    return blobs, source


def _write_files(tar: TarWriter, urls: List[str], client: "Client", headers: Dict[str, str],
                 log: Optional[TextIO]) -> Tuple[List[ocilayout.File], int]:
    """Each file, named by the digest of its bytes: (the files, bytes from the source)."""
    files, source = [], 0
    for url in urls:
        name, size = tar.add_stream(client.stream(url, headers=headers), None, None, url)
        source += _from_source(client)
        digest = ocilayout.digest_of_name(name)
        files.append(ocilayout.File(url, digest, size))
        _say(log, "file %s: %s, %s" % (url, human_bytes(size), digest))
    return files, source


def _from_source(client: "Client") -> int:
    result = client.last_result
    return result.bytes_from_source if result is not None else 0


def _say(log: Optional[TextIO], line: str) -> None:
    if log is not None:
        log.write("export: %s\n" % line)
        log.flush()


def describe(summary: Summary) -> str:
    where = summary.parts[0] if len(summary.parts) == 1 else "%s ... %s (%d parts)" % (
        os.path.basename(summary.parts[0]), os.path.basename(summary.parts[-1]), len(summary.parts))
    return ("exported %d images (%d blobs) and %d files: %s in %s, %s from the source, %.1fs"
            % (summary.images, summary.blobs, summary.files, human_bytes(summary.archive_bytes), where,
               human_bytes(summary.bytes_from_source), summary.elapsed_s))
