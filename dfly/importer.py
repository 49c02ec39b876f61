"""`dfly import FILE --data-dir DIR`: seed a daemon's or a supernode's cache from
an export archive (protocol/ocilayout.py), as if its content had been fetched
from its source.

Stage, then commit. The tar stream is read once, in order, with flat memory:
each blob is copied to a staging folder inside the data dir while its digest
is computed, and refused at once when it does not match its name. Then the
documents are checked against what was staged (every manifest of every image,
every config and layer of every manifest, every file: present, of the size
stated). Only when all of it holds is anything moved into the cache, by
renames within one file system; a damaged, truncated or malformed archive
names its first bad entry and leaves the data dir as it was.

Where content goes:
- daemon: config and layer blobs into DATA_DIR/daemon/cache under the key the
  registry mirror uses (registry.blob_key), manifests into the imported
  images (peer/imported.py), each file under the key of the task `dfly get
  URL --digest D` hands the daemon (without --digest, a daemon asks the source
  whether a cached file changed: import files into the supernode for those).
- supernode: config and layer blobs, and files, as finished tasks in
  DATA_DIR/tasks/<task id> (data and meta.json, as supernode/task.py writes
  them: every piece's sha256), keyed as the mirror's and `get`'s tasks are.
  A supernode keeps no manifests: import the archive into the daemons too,
  with --manifests-only (each daemon keeps the manifests and the list of the
  images' blobs; while the registry cannot be reached its mirror fetches
  those blobs through the cluster, from the supernode's imported tasks).
Stop the daemon or supernode first: each reads its cache folder when it starts.
"""
import hashlib
import json
import os
import shutil
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, TextIO

from dfly import datadir, errors
from dfly.archive import PartReader
from dfly.peer import imported
from dfly.protocol import ocilayout
from dfly.protocol import preheat as rules
from dfly.protocol.pieces import piece_size_for
from dfly.protocol.redact import redact_url
from dfly.protocol.task import task_id
from dfly.protocol.units import human_bytes
from dfly.protocol.urls import normalize_url

EXIT_CODES = {0: "imported", 1: "other error", 2: "usage error (a bad flag, or a data dir of "
              "unknown kind without --into)",
              4: "the archive is damaged (an entry does not match its digest, or it is truncated "
                 "or malformed: the first bad entry is named); nothing imported",
              6: "local I/O error (the archive cannot be read, the data dir cannot be written); "
                 "nothing imported"}
CHUNK = 1 << 20
KINDS = ("daemon", "supernode")


class DamagedArchive(errors.DflyError):
    """The archive is damaged, truncated or malformed (exit 4, as a digest mismatch)."""
    exit_code = 4


class Staged(NamedTuple):
    path: str
    size: int
    pieces: List[str]   # sha256 of each piece (for a supernode's meta)


class Summary(NamedTuple):
    kind: str
    images: int
    blobs: int
    files: int
    bytes: int


def kind_of(data_dir: str, into: str = "") -> str:
    """Which program's data dir this is: --into, else what is in it."""
    if into:
        if into not in KINDS:
            raise errors.BadRequest("--into must be daemon or supernode, got %r" % into)
        return into
    if os.path.isdir(os.path.join(data_dir, "daemon")):
        return "daemon"
    if os.path.isdir(os.path.join(data_dir, "tasks")):
        return "supernode"
    raise errors.BadRequest("%s holds neither a daemon's nor a supernode's cache yet: say which "
                            "with --into daemon or --into supernode" % data_dir)


def import_archive(path: str, data_dir: str, into: str = "", log: Optional[TextIO] = None,
                   manifests_only: bool = False, more_parts: Sequence[str] = ()) -> Summary:
    """`manifests_only` (a daemon): keep the images' manifests, not their blobs (they are
    imported into the supernode, and fetched through the cluster); every digest is still
    checked."""
    kind = kind_of(data_dir, into)
    if manifests_only and kind != "daemon":
        raise errors.BadRequest("--manifests-only is for a daemon's data dir")
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as e:
        raise errors.LocalIOError("cannot write %s: %s" % (data_dir, e.strerror or e))
    # the program reads its cache as it starts: one running there would not see the
    # import, and its own evictions would race the renames (DataDirInUse, exit 2)
    lock = _hold(data_dir, kind)
    try:
        return _import_locked(path, data_dir, kind, log, manifests_only, more_parts)
    finally:
        lock.release()


def _hold(data_dir: str, kind: str):
    try:
        return datadir.hold(data_dir, kind, "dfly import")
    except errors.DataDirInUse as e:
        raise errors.DataDirInUse("%s: stop it first (a program reads its cache as it starts)" % e)
    except OSError as e:
        raise errors.LocalIOError("cannot write %s: %s" % (data_dir, e.strerror or e))


def _import_locked(path: str, data_dir: str, kind: str, log: Optional[TextIO],
                   manifests_only: bool, more_parts: Sequence[str]) -> Summary:
    try:
        staging = os.path.join(data_dir, ".import-" + os.urandom(4).hex())
        os.makedirs(staging)
    except OSError as e:
        raise errors.LocalIOError("cannot write %s: %s" % (data_dir, e.strerror or e))
    try:
        reader = PartReader(path, more_parts)
        try:
            keep = (lambda size: size <= rules.MAX_MANIFEST_BYTES) if manifests_only else None
            staged, documents = read_archive(reader, staging, with_pieces=kind == "supernode",
                                             keep=keep)
        finally:
            reader.close()
        images, files = check(staged, documents)
        if kind == "daemon":
            summary = _commit_daemon(data_dir, staged, images, files, manifests_only)
        else:
            summary = _commit_supernode(data_dir, staged, images, files, log)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if log is not None:
        log.write("import: %d images (%d blobs) and %d files, %s, into the %s cache at %s\n"
                  % (summary.images, summary.blobs, summary.files, human_bytes(summary.bytes), kind,
                     data_dir))
    return summary


# reading --------------------------------------------------------------------------------

def read_archive(reader, staging: str, with_pieces: bool = False,
                 keep: Optional[Callable[[int], bool]] = None):
    """Every blob checked against its name and staged (with `keep`, only those of the sizes
    it keeps; the others' path is ""); ({digest: Staged}, {name: bytes})."""
    staged: Dict[str, Staged] = {}
    documents: Dict[str, bytes] = {}
    after = "the start of the archive"
    while True:
        try:
            header = ocilayout.parse_header(reader.read(ocilayout.BLOCK), after)
        except ocilayout.BadArchive as e:
            raise DamagedArchive(str(e))
        if header is None:
            break
        name = header.name
        if header.kind not in (b"0", b"5", b"x", b"g"):
            raise DamagedArchive("entry %s: not a regular file (tar type %r)" % (name, header.kind))
        digest = ocilayout.digest_of_name(name) if header.kind == b"0" else None
        if digest is not None:
            staged[digest] = _stage(reader, name, digest, header.size,
                                    staging if keep is None or keep(header.size) else "",
                                    with_pieces)
        elif header.kind == b"0" and name in (ocilayout.LAYOUT_NAME, ocilayout.INDEX_NAME,
                                              ocilayout.FILES_NAME):
            if header.size > ocilayout.MAX_DOCUMENT_BYTES:
                raise DamagedArchive("entry %s: over %d bytes" % (name, ocilayout.MAX_DOCUMENT_BYTES))
            documents[name] = _exactly(reader, header.size, name)
        else:   # a folder, a pax header, anything else an OCI layout may hold: not ours
            _skip(reader, header.size, name)
        _skip(reader, ocilayout.padding(header.size), name)
        after = "entry " + name
    if ocilayout.LAYOUT_NAME not in documents:
        raise DamagedArchive("no %s entry: not an OCI image layout archive" % ocilayout.LAYOUT_NAME)
    if ocilayout.INDEX_NAME not in documents:
        raise DamagedArchive("no %s entry after %s: the archive is truncated or not an export"
                             % (ocilayout.INDEX_NAME, after))
    return staged, documents


def _stage(reader, name: str, digest: str, size: int, staging: str, with_pieces: bool) -> Staged:
    algorithm, _, hexdigest = digest.partition(":")
    whole = hashlib.new(algorithm)
    pieces = PieceDigests(piece_size_for(size)) if with_pieces else None
    path = os.path.join(staging, "%s-%s" % (algorithm, hexdigest)) if staging else ""
    left = size
    try:
        with open(path, "wb") if path else _Nowhere() as out:
            while left:
                block = reader.read(min(CHUNK, left))
                if not block:
                    raise DamagedArchive("the archive is truncated in entry %s (%d of %d bytes)"
                                         % (name, size - left, size))
                left -= len(block)
                whole.update(block)
                out.write(block)
                if pieces is not None:
                    pieces.update(block)
    except OSError as e:
        raise errors.LocalIOError("cannot write %s: %s" % (path, e.strerror or e))
    if whole.hexdigest() != hexdigest:
        raise DamagedArchive("entry %s does not match its digest (got %s:%s)"
                             % (name, algorithm, whole.hexdigest()))
    return Staged(path, size, pieces.finish() if pieces is not None else [])


class _Nowhere:
    """Where a blob that is checked but not kept is written."""

    def __enter__(self) -> "_Nowhere":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass


class PieceDigests:
    """The sha256 of each piece of a stream, as the supernode's CDN cuts them."""

    def __init__(self, piece_size: int):
        self.piece_size = piece_size
        self.done: List[str] = []
        self._piece = hashlib.sha256()
        self._in_piece = 0

    def update(self, block: bytes) -> None:
        view = memoryview(block)
        while view:
            part, view = view[:self.piece_size - self._in_piece], view[self.piece_size - self._in_piece:]
            self._piece.update(part)
            self._in_piece += len(part)
            if self._in_piece == self.piece_size:
                self.done.append(self._piece.hexdigest())
                self._piece, self._in_piece = hashlib.sha256(), 0

    def finish(self) -> List[str]:
        if self._in_piece:
            self.done.append(self._piece.hexdigest())
            self._in_piece = 0
        return self.done


def _exactly(reader, size: int, name: str) -> bytes:
    data = reader.read(size)
    if len(data) != size:
        raise DamagedArchive("the archive is truncated in entry %s (%d of %d bytes)"
                             % (name, len(data), size))
    return data


def _skip(reader, size: int, name: str) -> None:
    while size:
        block = reader.read(min(CHUNK, size))
        if not block:
            raise DamagedArchive("the archive is truncated in entry %s" % name)
        size -= len(block)


# checking -------------------------------------------------------------------------------

class ImageContent(NamedTuple):
    image: ocilayout.Image
    manifests: Dict[str, str]   # digest -> media type, the top one included
    blobs: List[str]            # config and layer digests


def check(staged: Dict[str, Staged], documents: Dict[str, bytes]):
    """Every image's manifests and blobs, and every file, present and of the stated size."""
    try:
        images = ocilayout.parse_layout_index(documents[ocilayout.INDEX_NAME])
        files = (ocilayout.parse_files_index(documents[ocilayout.FILES_NAME])
                 if ocilayout.FILES_NAME in documents else [])
    except ocilayout.BadArchive as e:
        raise DamagedArchive(str(e))
    contents = [_image_content(image, staged) for image in images]
    checked = []
    for i, f in enumerate(files):
        try:
            checked.append(f._replace(url=normalize_url(f.url)))
        except errors.BadRequest as e:
            raise DamagedArchive("%s: files[%d]: %s" % (ocilayout.FILES_NAME, i, e))
        _need(staged, f.digest, f.size, "file %s" % f.url)
    return contents, checked


def _image_content(image: ocilayout.Image, staged: Dict[str, Staged]) -> ImageContent:
    what = "image %s" % (image.name or image.repository)
    _need(staged, image.digest, image.size, what)
    manifests, blobs = {image.digest: image.media_type}, []
    walked = _walk(staged[image.digest], image.media_type, what)
    present = [d for d in walked.manifests if d in staged]
    if walked.manifests and not present:
        raise DamagedArchive("%s: none of its index's manifests is in the archive" % what)
    todo = [(image.digest, walked)]
    for digest in present:   # an export for some platforms holds only theirs
        child = _walk(staged[digest], "", "%s manifest %s" % (what, digest))
        manifests[digest] = _media_type_of(staged[digest].path)
        todo.append((digest, child))
    for digest, found in todo:
        for blob in found.blobs:
            _need(staged, blob.digest, blob.size, "%s (manifest %s) blob" % (what, digest))
            if blob.digest not in blobs:
                blobs.append(blob.digest)
    return ImageContent(image, manifests, blobs)


def _walk(entry: Staged, media_type: str, what: str) -> rules.Walked:
    if entry.size > rules.MAX_MANIFEST_BYTES:
        raise DamagedArchive("%s: manifest over %d bytes" % (what, rules.MAX_MANIFEST_BYTES))
    with open(entry.path, "rb") as f:
        body = f.read()
    try:
        return rules.walk(body, media_type)
    except rules.BadManifest as e:
        raise DamagedArchive("%s: %s" % (what, str(e).replace("the registry's ", "")))


def _media_type_of(path: str) -> str:
    with open(path, "rb") as f:
        kind = json.loads(f.read().decode("utf-8")).get("mediaType")
    return kind if isinstance(kind, str) and kind else rules.MANIFEST_TYPES[0]


def _need(staged: Dict[str, Staged], digest: str, size: int, what: str) -> None:
    entry = staged.get(digest)
    if entry is None:
        raise DamagedArchive("%s: %s is not in the archive (entry %s missing)"
                             % (what, digest, ocilayout.blob_name(digest)))
    if entry.size != size:
        raise DamagedArchive("%s: entry %s is %d bytes where %d are stated"
                             % (what, ocilayout.blob_name(digest), entry.size, size))


# committing -----------------------------------------------------------------------------

def _commit_daemon(data_dir: str, staged: Dict[str, Staged], images: List[ImageContent],
                   files: List[ocilayout.File], manifests_only: bool) -> Summary:
    from dfly.peer.registry import blob_key  # here: the CLI's parser loads this module light
    cache = os.path.join(data_dir, "daemon", "cache")
    store = imported.ImportedImages.in_data_dir(data_dir)
    moved, total = set(), 0
    try:
        os.makedirs(cache, exist_ok=True)
        os.makedirs(os.path.join(store.root, "manifests"), exist_ok=True)
        tags: Dict[str, Dict[str, str]] = {}
        types: Dict[str, str] = {}
        blobs: Dict[str, int] = {}
        for content in images:
            for digest, media_type in content.manifests.items():
                _place(staged[digest].path, store.manifest_path(digest))
                types[digest] = media_type
            tags.setdefault(content.image.repository, {})[content.image.reference] = content.image.digest
            for digest in content.blobs:
                blobs[digest] = staged[digest].size
                if digest not in moved and not manifests_only:
                    total += staged[digest].size
                    _place(staged[digest].path, os.path.join(cache, blob_key(digest)))
                    moved.add(digest)
        for f in files if not manifests_only else ():
            _place(staged[f.digest].path, os.path.join(cache, "task-" + task_id(f.url, (), f.digest)))
            total += f.size
        imported.write_index(store.root, imported.add_images(store.index(), tags, types, blobs))
    except OSError as e:
        raise errors.LocalIOError("cannot write %s: %s" % (data_dir, e.strerror or e))
    return Summary("daemon", len(images), len(moved), 0 if manifests_only else len(files), total)


def _commit_supernode(data_dir: str, staged: Dict[str, Staged], images: List[ImageContent],
                      files: List[ocilayout.File], log: Optional[TextIO]) -> Summary:
    tasks = os.path.join(data_dir, "tasks")
    done, total = set(), 0
    try:
        os.makedirs(tasks, exist_ok=True)
        for content in images:
            ref = rules.image_ref(content.image.source) if content.image.source else None
            for digest in content.blobs:
                if digest in done:
                    continue
                url = ref.blob_url(digest) if ref is not None else ""
                _task(tasks, task_id(url, (), digest, digest), url, digest, staged[digest],
                      '"%s"' % digest)
                done.add(digest)
                total += staged[digest].size
        for f in files:
            _task(tasks, task_id(f.url), f.url, None, staged[f.digest], "")
            total += f.size
    except OSError as e:
        raise errors.LocalIOError("cannot write %s: %s" % (data_dir, e.strerror or e))
    if images and log is not None:
        log.write("import: a supernode keeps no manifests: import this archive into the daemons "
                  "too (--into daemon --manifests-only) for pulls of its images\n")
    return Summary("supernode", len(images), len(done), len(files), total)


def _task(tasks: str, tid: str, url: str, digest: Optional[str], entry: Staged, etag: str) -> None:
    """A finished task folder, as the supernode writes one (supernode/task.py save_meta).
    A registry's blob ETag is its quoted digest, so a registry that answers revalidates it
    with a 304; the content version follows from it as cdn.content_version_for makes it."""
    from dfly.supernode.cdn import content_version_for
    folder = os.path.join(tasks, tid)
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    piece_size = piece_size_for(entry.size)
    meta = {"url": redact_url(url), "length": entry.size, "piece_size": piece_size,
            "etag": etag, "last_modified": "",
            "content_version": content_version_for(etag, entry.size, piece_size),
            "complete": True, "digests": entry.pieces, "digest": digest, "damaged": []}
    _place(entry.path, os.path.join(folder, "data"))
    with open(os.path.join(folder, "meta.json.tmp"), "w") as f:
        json.dump(meta, f)
    os.replace(os.path.join(folder, "meta.json.tmp"), os.path.join(folder, "meta.json"))


def _place(staged_path: str, target: str) -> None:
    """Put a staged file at `target`: a hard link (one staged file may go to several
    places), else a copy; renamed over whatever was there."""
    temp = target + ".import-tmp"
    try:
        os.link(staged_path, temp)
    except OSError:
        shutil.copyfile(staged_path, temp)
    os.replace(temp, target)
