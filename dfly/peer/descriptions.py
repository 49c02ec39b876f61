"""What the origin says about a proxied URL (its content headers, with its
validators), asked once per task rather than once per client.

Two hundred clients asking the proxy for one cold file at once would otherwise
send the origin two hundred HEADs. The first asker's HEAD is the flight; the
others wait for its answer (single-flight). A good answer is kept for
`fresh_for_s` with its validators; after that the next asker sends one
conditional HEAD, which renews it (304) or replaces it. A failure or refusal is
shared only with the requests that waited for it: the next request asks again.
Requests that carry credentials do not come here: the origin judges each of them.
"""
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

Pairs = List[Tuple[str, str]]


@dataclass(frozen=True)
class Description:
    headers: Pairs                 # the content headers a P2P answer carries
    validators: Pairs = field(default_factory=list)   # the HEAD's ETag / Last-Modified
    keep: bool = False             # a good answer: reuse it for the task

    def conditions(self) -> Pairs:
        """Headers that make the next HEAD conditional on these validators."""
        names = {"etag": "If-None-Match", "last-modified": "If-Modified-Since"}
        return [(names[k.lower()], v) for k, v in self.validators if k.lower() in names]


# ask(previous) asks the origin; `previous` is the expired description to revalidate, or None.
Ask = Callable[[Optional[Description]], Description]


class _Flight:
    def __init__(self):
        self.done = threading.Event()
        self.result: Optional[Description] = None
        self.error: Optional[BaseException] = None
        self.waiters = 0


class Descriptions:
    def __init__(self, fresh_for_s: float, clock: Callable[[], float], wait_s: float,
                 max_kept: int = 4096):
        self.fresh_for_s = fresh_for_s
        self.clock = clock
        self.wait_s = wait_s          # how long a waiter trusts a flight before asking itself
        self.max_kept = max_kept
        self.asked = 0                # HEADs sent through here, for tests and benchmarks
        self._lock = threading.Lock()
        self._kept: Dict[str, Tuple[float, Description]] = OrderedDict()   # oldest first
        self._flights: Dict[str, _Flight] = {}

    def get(self, url: str, ask: Ask) -> Description:
        with self._lock:
            kept = self._kept.get(url)
            if kept is not None and self.clock() - kept[0] < self.fresh_for_s:
                return kept[1]
            flight = self._flights.get(url)
            leader = flight is None
            if leader:
                flight = self._flights[url] = _Flight()
            else:
                flight.waiters += 1
        if leader:
            return self._fly(url, flight, ask, kept[1] if kept is not None else None)
        if not flight.done.wait(self.wait_s):
            return self._ask(ask, None)   # the flight is stuck: do not wait for it any longer
        if flight.error is not None:
            raise flight.error
        return flight.result

    def waiting(self, url: str) -> int:
        """How many requests wait for the HEAD in flight for `url`."""
        with self._lock:
            flight = self._flights.get(url)
            return flight.waiters if flight is not None else 0

    def _fly(self, url: str, flight: _Flight, ask: Ask, previous: Optional[Description]) -> Description:
        try:
            flight.result = self._ask(ask, previous)
            return flight.result
        except BaseException as e:
            flight.error = e
            raise
        finally:
            with self._lock:
                del self._flights[url]
                self._keep(url, flight.result)
            flight.done.set()

    def _ask(self, ask: Ask, previous: Optional[Description]) -> Description:
        with self._lock:
            self.asked += 1
        return ask(previous)

    def _keep(self, url: str, result: Optional[Description]) -> None:
        if result is None or not result.keep:
            self._kept.pop(url, None)
            return
        self._kept[url] = (self.clock(), result)
        self._kept.move_to_end(url)
        while len(self._kept) > self.max_kept:
            self._kept.popitem(last=False)
