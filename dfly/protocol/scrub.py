"""Scrubbing rules: which cached file to check next, and how fast. Pure.

A scrub reads a cached file piece by piece and checks each piece against the
sha256 recorded when it was cut, as ZFS scrubs and BitTorrent rechecks do, so
a disk that rots is found before a peer pays for it. Files whose metadata says
they were being written when the process died go first (a crash can leave
their last pieces torn); then files never checked by this process; then the
one checked longest ago, once SCRUB_AGAIN_AFTER_S has passed. Reading is paced
by a token bucket (ratelimit.TokenBucket, `now` passed in) at the scrub rate,
a small share of a disk's bandwidth, so serving is not slowed.
"""
from dataclasses import dataclass
from typing import Iterable, Optional

DEFAULT_SCRUB_RATE = 10 << 20   # bytes per second: ~5 % of a spinning disk, less of an SSD
SCRUB_AGAIN_AFTER_S = 24 * 3600.0
SCRUB_STEP_BYTES = 1 << 20      # read (and paced) this much at a time


@dataclass(frozen=True)
class ScrubCandidate:
    name: str
    unclean: bool = False               # was being written when the process died
    checked_at: Optional[float] = None  # last whole check by this process; None: never


def next_to_scrub(candidates: Iterable[ScrubCandidate], now: float,
                  again_after_s: float = SCRUB_AGAIN_AFTER_S) -> Optional[str]:
    """The name to check next, or None when every file was checked recently enough."""
    best, best_key = None, None
    for c in candidates:
        if c.unclean:
            key = (0, 0.0, c.name)
        elif c.checked_at is None:
            key = (1, 0.0, c.name)
        elif now - c.checked_at >= again_after_s:
            key = (2, c.checked_at, c.name)
        else:
            continue
        if best_key is None or key < best_key:
            best, best_key = c.name, key
    return best

