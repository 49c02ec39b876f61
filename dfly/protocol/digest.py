"""Digests as they travel: "sha256:<64 hex>". Parsing is strict so a typo in
--digest is a usage error, not a silent mismatch after a long download."""
import hashlib
import re
from typing import Tuple

_DIGEST = re.compile(r"^(sha256|sha512|md5):([0-9a-f]+)$")
_HEX_LEN = {"sha256": 64, "sha512": 128, "md5": 32}


def parse_digest(text: str) -> Tuple[str, str]:
    """("sha256", hex) from "sha256:HEX"; ValueError with the reason otherwise."""
    m = _DIGEST.match(text.strip().lower())
    if not m or len(m.group(2)) != _HEX_LEN[m.group(1)]:
        raise ValueError("digest must look like sha256:<64 hex digits>, got %r" % text)
    return m.group(1), m.group(2)


def new_hasher(digest: str) -> "hashlib._Hash":
    """A fresh hash object of the algorithm that `digest` names."""
    return hashlib.new(parse_digest(digest)[0])


def format_digest(algorithm: str, hexdigest: str) -> str:
    return "%s:%s" % (algorithm, hexdigest)


def mismatch(expected: str, got: str) -> str:
    """The one digest-mismatch message, whoever found it (a peer or the supernode), so a
    user reads the same whichever path the download took."""
    return "content does not match the expected digest %s (got %s)" % (expected, got)
