"""How each cached file is offered to peers, kept beside the cache so that a
restarted daemon (or one whose supernode forgot it) can announce them again.

One small JSON file per cache key: the task's URL, digest, identifier, filters,
piece size, each piece's sha256 (what the scrub checks the file against) and
the content version the file is of (the supernode ignores pieces of another
version, and the daemon stops offering them). Credentials are never written:
after a restart the daemon announces without them, which is enough while the
supernode still holds the task (it keeps the headers its registrants gave it).
The URL is kept whole (its query is part of the task's identity, unless
filtered), so a record is readable by the daemon's user only (0600), as its
hand-off token is.

    seeds/<key>.json   {"url": ..., "digest": ..., "identifier": ..., "filters": [...], "piece_size": N,
                        "content_version": "...", "digests": ["<sha256 hex of piece 0>", ...]}
"""
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import List, Optional

log = logging.getLogger("dfly.daemon")


@dataclass(frozen=True)
class Seed:
    url: str
    piece_size: int
    digest: Optional[str] = None
    identifier: Optional[str] = None
    filters: List[str] = field(default_factory=list)
    content_version: str = ""   # "": recorded before versions existed (unknown)
    digests: List[str] = field(default_factory=list)   # empty in records written before them

    @classmethod
    def parse(cls, value: dict) -> "Seed":
        seed = cls(url=value["url"], piece_size=int(value["piece_size"]), digest=value.get("digest"),
                   identifier=value.get("identifier"), filters=list(value.get("filters") or []),
                   content_version=value.get("content_version") or "",
                   digests=list(value.get("digests") or []))
        if not isinstance(seed.url, str) or seed.piece_size <= 0 \
                or not isinstance(seed.content_version, str) \
                or not all(isinstance(d, str) for d in seed.digests):
            raise ValueError("bad seed record")
        return seed


class SeedBook:
    def __init__(self, root: str):
        self.root = root
        os.makedirs(root, exist_ok=True)

    def put(self, key: str, seed: Seed) -> None:
        path = self._path(key)
        temp = path + ".tmp"
        try:
            with os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                json.dump(asdict(seed), f)
            os.replace(temp, path)
        except OSError as e:   # a full disk costs the re-announce after a restart, nothing else
            log.warning("cannot record how to announce %s: %s", key, e)
            _remove(temp)

    def get(self, key: str) -> Optional[Seed]:
        try:
            with open(self._path(key)) as f:
                return Seed.parse(json.load(f))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remove(self, key: str) -> None:
        _remove(self._path(key))

    def keys(self) -> List[str]:
        return sorted(name[:-5] for name in os.listdir(self.root) if name.endswith(".json"))

    def _path(self, key: str) -> str:
        return os.path.join(self.root, key + ".json")


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
