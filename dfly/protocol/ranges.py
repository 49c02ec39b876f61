"""HTTP Range requests on a body of known length (RFC 9110 section 14). Pure.

Only a single byte range is honoured: `bytes=N-M`, `bytes=N-` and the suffix
form `bytes=-N`. A header that does not parse, names another unit or asks for
several ranges is ignored (the whole body is sent, as the RFC allows); a range
that starts past the end is unsatisfiable (416).
"""
import re
from typing import Optional, Tuple

_SINGLE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.I)
_MAX_DIGITS = 19


class RangeNotSatisfiable(Exception):
    """The range lies wholly outside the body; answer 416 with `bytes */length`."""

    def __init__(self, length: int):
        super().__init__("range not satisfiable for %d bytes" % length)
        self.length = length


def parse_range(header: Optional[str], length: int) -> Optional[Tuple[int, int]]:
    """(first, last) byte offsets, inclusive, to send for `header`; None for the whole body."""
    if not header:
        return None
    m = _SINGLE.match(header)
    if not m:
        return None
    first_text, last_text = m.group(1), m.group(2)
    if (not first_text and not last_text) or len(first_text) > _MAX_DIGITS or len(last_text) > _MAX_DIGITS:
        return None
    if not first_text:   # suffix: the last N bytes
        suffix = int(last_text)
        if suffix == 0:
            raise RangeNotSatisfiable(length)
        if length == 0:
            return None
        return max(0, length - suffix), length - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None   # syntactically invalid: ignored
    if first >= length:
        raise RangeNotSatisfiable(length)
    last = int(last_text) if last_text else length - 1
    return first, min(last, length - 1)


def content_range(first: int, last: int, length: int) -> str:
    """The Content-Range value of a 206 reply."""
    return "bytes %d-%d/%d" % (first, last, length)
