"""Images `dfly import` put in a daemon's data dir: their manifests, by repository
and tag or digest. (Their config and layer blobs are in the daemon's cache,
under the keys the registry mirror uses: registry.blob_key.)

On disk, under DATA_DIR/daemon/imported/: `images.json`
({"tags": {repository: {tag or digest: digest}}, "types": {digest: media
type}, "blobs": {digest: size}}) and `manifests/<algorithm>-<hex>`, each
manifest's bytes. The blobs the images name are served from the daemon's
cache, or (imported into the supernode instead: `--manifests-only`) fetched
through the cluster as the mirror fetches any blob. The
registry mirror answers from here only while the registry cannot be reached
at all (outage mode's rule: a registry that answers is believed), so a site
whose registry is not there (air-gapped) pulls what was imported. The index
is read again when its file changes (the cache's files, though, are read only
when the daemon starts: import into a stopped daemon).
"""
import json
import os
import threading
from typing import Dict, NamedTuple, Optional

from dfly.protocol import oci

FOLDER = os.path.join("daemon", "imported")
INDEX = "images.json"
PARTS = ("tags", "types", "blobs")


class Kept(NamedTuple):
    digest: str
    media_type: str
    path: str


class ImportedImages:
    def __init__(self, root: str):
        self.root = root
        self._lock = threading.Lock()
        self._seen = None   # (mtime_ns, size) of the index last read
        self._doc: dict = {name: {} for name in PARTS}

    @classmethod
    def in_data_dir(cls, data_dir: str) -> "ImportedImages":
        return cls(os.path.join(data_dir, FOLDER))

    def manifest(self, name: str, reference: str) -> Optional[Kept]:
        """The imported manifest `name:reference` (a tag, or a digest of any manifest kept)."""
        doc = self._load()
        digest = reference if oci.DIGEST.match(reference) else doc["tags"].get(name, {}).get(reference)
        if not digest or digest not in doc["types"]:
            return None
        path = self.manifest_path(digest)
        return Kept(digest, doc["types"][digest], path) if os.path.exists(path) else None

    def any(self) -> bool:
        return bool(self._load()["types"])

    def has_blob(self, digest: str) -> bool:
        return digest in self._load()["blobs"]

    def manifest_path(self, digest: str) -> str:
        return os.path.join(self.root, "manifests", digest.replace(":", "-"))

    def index(self) -> dict:
        return json.loads(json.dumps(self._load()))   # a copy the caller may change

    def _load(self) -> dict:
        path = os.path.join(self.root, INDEX)
        try:
            st = os.stat(path)
        except OSError:
            return {name: {} for name in PARTS}
        with self._lock:
            if self._seen != (st.st_mtime_ns, st.st_size):
                try:
                    with open(path) as f:
                        doc = json.load(f)
                except (OSError, ValueError):
                    doc = {}
                self._doc = {name: doc.get(name) if isinstance(doc.get(name), dict) else {}
                             for name in PARTS}
                self._seen = (st.st_mtime_ns, st.st_size)
            return self._doc


def add_images(index: dict, tags: Dict[str, Dict[str, str]], types: Dict[str, str],
               blobs: Dict[str, int]) -> dict:
    """`index` (as ImportedImages.index gives it) with these tags, manifests and blobs added."""
    for name, refs in tags.items():
        index["tags"].setdefault(name, {}).update(refs)
    index["types"].update(types)
    index["blobs"].update(blobs)
    return index


def write_index(root: str, index: dict) -> None:
    """Replace images.json atomically."""
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, INDEX)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(index, f, sort_keys=True)
    os.replace(tmp, path)
