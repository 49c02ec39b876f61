"""The progress bar `dfly get` draws on a terminal: percent, rate, ETA, and
where the bytes came from. Redrawn at most ten times a second."""
import time
from typing import TYPE_CHECKING, Callable, Optional, TextIO

from dfly.protocol.units import human_bytes, received  # noqa: F401  (shown here, and re-exported)

if TYPE_CHECKING:   # the downloader reports in these units too: no import cycle at run time
    from dfly.peer.downloader import ByteSplit


class ProgressBar:
    def __init__(self, out: TextIO, clock: Callable[[], float] = time.monotonic, width: int = 30):
        self.out = out
        self.clock = clock
        self.width = width
        self.started = clock()
        self._drawn_at = 0.0

    def update(self, done: int, total: Optional[int], split: "ByteSplit", cache: int = 0) -> None:
        """`cache`: bytes copied from the daemon's cache (a hand-off it already had)."""
        now = self.clock()
        if now - self._drawn_at < 0.1 and (total is None or done < total):
            return
        self._drawn_at = now
        rate = done / max(now - self.started, 1e-6)
        if total:
            filled = int(self.width * min(done, total) / total)
            bar = "[%s%s] %3d%%" % ("#" * filled, "." * (self.width - filled), 100 * done // total)
            eta = " ETA %ds" % ((total - done) / rate) if rate > 0 and done < total else ""
        else:
            bar, eta = "[%s]" % human_bytes(done), ""
        self.out.write("\r%s %s/s%s  peers %s, supernode %s, source %s%s " % (
            bar, human_bytes(rate), eta, human_bytes(split.peers), human_bytes(split.supernode),
            human_bytes(split.source), ", local cache %s" % human_bytes(cache) if cache else ""))
        self.out.flush()

    def finish(self) -> None:
        self.out.write("\n")
        self.out.flush()


def human_duration(seconds: float) -> str:
    """"2s", "1.5s", "5m", "2h", "250ms": as --timeout and the other duration flags take it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and (seconds / size == int(seconds / size) or unit == "s"):
            return "%g%s" % (round(seconds / size, 2), unit)
    return "%gms" % round(seconds * 1000, 3) if seconds else "0s"
