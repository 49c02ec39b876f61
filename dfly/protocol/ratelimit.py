"""A token bucket: bytes per second with a one-second burst. Pure: the caller
passes `now` and sleeps for the delay it gets back, so one bucket can be shared
by every thread of a download (or every task of a supernode)."""
import threading


class TokenBucket:
    def __init__(self, rate_bytes_per_s: float, now: float):
        self.rate_bytes_per_s = float(rate_bytes_per_s)
        self._tokens = self.rate_bytes_per_s
        self._stamp = now
        self._lock = threading.Lock()

    def reserve(self, nbytes: int, now: float) -> float:
        """Take `nbytes`; return how many seconds to wait before using them."""
        if self.rate_bytes_per_s <= 0:
            return 0.0
        with self._lock:
            elapsed = max(0.0, now - self._stamp)
            self._stamp = max(self._stamp, now)   # a thread with a stale `now` earns nothing twice
            self._tokens = min(self.rate_bytes_per_s, self._tokens + elapsed * self.rate_bytes_per_s)
            self._tokens -= nbytes
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.rate_bytes_per_s
