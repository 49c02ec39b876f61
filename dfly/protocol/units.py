"""Sizes as people read them, in every message a user sees (the supernode's errors
reach `get`'s last line too): "4.0 MiB of 64.0 MiB", never "4194304 bytes". Pure."""
from typing import Optional


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else "%.1f %s" % (n, unit)
        n /= 1024.0
    return "%d B" % n


def received(done: int, total: Optional[int]) -> str:
    """How far a transfer got: "4.0 MiB of 64.0 MiB" (or "4.0 MiB" when the size is unknown)."""
    return "%s of %s" % (human_bytes(done), human_bytes(total)) if total else human_bytes(done)
