"""Which cached tasks to delete to get under a size limit. Pure policy:
least recently used first, never one still in use."""
from typing import List, NamedTuple


class CacheEntry(NamedTuple):
    name: str
    size: int
    last_used: float
    evictable: bool


def choose_evictions(entries: List[CacheEntry], limit_bytes: int) -> List[str]:
    """Names to evict, oldest first, until the total fits in `limit_bytes`."""
    total = sum(e.size for e in entries)
    out = []
    for entry in sorted((e for e in entries if e.evictable), key=lambda e: e.last_used):
        if total <= limit_bytes:
            break
        out.append(entry.name)
        total -= entry.size
    return out
