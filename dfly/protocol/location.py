"""Where a peer runs: a path of labels, widest first (`region/zone/rack`).

The scheduler prefers holders that share the longest prefix with the
requester, so a piece crosses a rack or zone as few times as the swarm allows.
A zone is the first two labels (region and zone): the supernode counts the
bytes peers move within and across zones. One label is one short word, so a
location fits a log line and cannot grow the supernode's memory.
"""
import re
from typing import Optional, Tuple

MAX_LABELS = 4
MAX_LABEL_LEN = 32
ZONE_LABELS = 2   # region/zone
_LABEL = re.compile(r"^[A-Za-z0-9._-]{1,%d}$" % MAX_LABEL_LEN)

Location = Tuple[str, ...]


def parse_location(text: Optional[str]) -> Location:
    """`region/zone/rack` -> ('region', 'zone', 'rack'); '' or None -> () (unknown).
    ValueError says what is wrong."""
    if not text:
        return ()
    labels = tuple(text.split("/"))
    if len(labels) > MAX_LABELS or not all(_LABEL.match(label) for label in labels) \
            or any(label in (".", "..") for label in labels):
        raise ValueError("location must be 1-%d labels joined by '/', each 1-%d of "
                         "[A-Za-z0-9._-] (e.g. eu-west/zone-a/rack-7), not %r"
                         % (MAX_LABELS, MAX_LABEL_LEN, text[:80]))
    return labels


def format_location(location: Location) -> str:
    return "/".join(location)

