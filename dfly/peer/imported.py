"""Images `dfly import` put in a daemon's data dir: their manifests, by repository
and tag or digest. (Their config and layer blobs are in the daemon's cache,
under the keys the registry mirror uses: registry.blob_key.)

On disk, under DATA_DIR/daemon/imported/: `images.json`
({"tags": {repository: {tag or digest: digest}}, "types": {digest: media
type}}) and `manifests/<algorithm>-<hex>`, each manifest's bytes. The
registry mirror answers from here only while the registry cannot be reached
at all (outage mode's rule: a registry that answers is believed), so a site
whose registry is not there (air-gapped) pulls what was imported. The index
is read again when its file changes, so an import is seen without a restart.
"""
import json
import os
import threading
from typing import Dict, NamedTuple, Optional

from dfly.protocol import oci

FOLDER = os.path.join("daemon", "imported")
INDEX = "images.json"


class Kept(NamedTuple):
    digest: str
    media_type: str
    path: str


class ImportedImages:
    def __init__(self, root: str):
        self.root = root
        self._lock = threading.Lock()
        self._seen = None   # (mtime_ns, size) of the index last read
        self._doc: dict = {"tags": {}, "types": {}}

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

    def manifest_path(self, digest: str) -> str:
        return os.path.join(self.root, "manifests", digest.replace(":", "-"))

    def index(self) -> dict:
        return json.loads(json.dumps(self._load()))   # a copy the caller may change

    def _load(self) -> dict:
        path = os.path.join(self.root, INDEX)
        try:
            st = os.stat(path)
        except OSError:
            return {"tags": {}, "types": {}}
        with self._lock:
            if self._seen != (st.st_mtime_ns, st.st_size):
                try:
                    with open(path) as f:
                        doc = json.load(f)
                except (OSError, ValueError):
                    doc = {}
                self._doc = {"tags": doc.get("tags") if isinstance(doc.get("tags"), dict) else {},
                             "types": doc.get("types") if isinstance(doc.get("types"), dict) else {}}
                self._seen = (st.st_mtime_ns, st.st_size)
            return self._doc


def add_manifests(root: str, index: dict, tags: Dict[str, Dict[str, str]],
                  types: Dict[str, str]) -> dict:
    """`index` (as ImportedImages.index gives it) with these tags and manifest types added."""
    for name, refs in tags.items():
        index["tags"].setdefault(name, {}).update(refs)
    index["types"].update(types)
    return index


def write_index(root: str, index: dict) -> None:
    """Replace images.json atomically."""
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, INDEX)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(index, f, sort_keys=True)
    os.replace(tmp, path)
