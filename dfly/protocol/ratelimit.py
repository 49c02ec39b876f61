"""A token bucket: bytes per second, with a burst of a tenth of a second. Pure: the
caller passes `now` and sleeps for the delay it gets back, so one bucket can be
shared by every thread of a download (or every task of a supernode).

The bucket starts empty and holds little, so the limit holds over any window
longer than a second (a full second of burst let `--rate-limit 20M` average
33 MiB/s over the first 1.5 s): bytes in a window of T seconds stay within
rate x (T + BURST_S), plus the one read in hand when the wait is asked for.
"""
import threading

BURST_S = 0.1


class TokenBucket:
    def __init__(self, rate_bytes_per_s: float, now: float, burst: float = 0.0):
        """`burst`: tokens it holds, there from the start (counting things rather than
        bytes: a rate of 2 per second, burst 120). Without one (a byte rate), it holds
        BURST_S worth and starts empty."""
        self.rate_bytes_per_s = float(rate_bytes_per_s)
        self.burst = float(burst) or self.rate_bytes_per_s * BURST_S
        self._tokens = float(burst)
        self._stamp = now
        self._lock = threading.Lock()

    def reserve(self, nbytes: int, now: float) -> float:
        """Take `nbytes`; return how many seconds to wait before using them."""
        if self.rate_bytes_per_s <= 0:
            return 0.0
        with self._lock:
            elapsed = max(0.0, now - self._stamp)
            self._stamp = max(self._stamp, now)   # a thread with a stale `now` earns nothing twice
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate_bytes_per_s)
            self._tokens -= nbytes
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.rate_bytes_per_s

    def take(self, count: int, now: float) -> bool:
        """Take `count` tokens if there are that many now; False (taking none) otherwise."""
        with self._lock:
            elapsed = max(0.0, now - self._stamp)
            self._stamp = max(self._stamp, now)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate_bytes_per_s)
            if self._tokens < count:
                return False
            self._tokens -= count
            return True

    def full(self, now: float) -> bool:
        """Would it be full at `now` (so forgetting it changes nothing)?"""
        with self._lock:
            return self._tokens + max(0.0, now - self._stamp) * self.rate_bytes_per_s >= self.burst
