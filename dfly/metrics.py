"""One metrics registry per program, and the Prometheus text exposition (0.0.4).

Each program's wiring registers its families here (supernode/metrics.py,
peer/daemon_metrics.py) and `GET /metrics` writes `Registry.exposition()`.

Counting must cost nothing on the data path, so no counter takes a lock: a
counter child keeps one plain int per thread (a dict keyed by the thread's
ident, written only by that thread; the GIL makes each dict store atomic), and
a scrape sums them. Values a program already keeps (its totals, its tasks, its
cache) are not counted twice: a family may instead be `read` at scrape time by
a callback returning {label values: number}. Histograms are observed per
request, not per byte, and take a small lock.

Names follow Prometheus': counters end in `_total`, sizes in `_bytes`,
durations in `_seconds`; every family has its `# HELP` and `# TYPE`.
"""
import math
import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds: a schedule reply (milliseconds) up to a whole download (minutes).
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 300.0, 1800.0)

Labels = Tuple[str, ...]
Reader = Callable[[], Dict[Labels, float]]


class _Cell:
    """One counter value, counted per thread without a lock, summed when read."""
    __slots__ = ("_by_thread",)

    def __init__(self):
        self._by_thread: Dict[int, float] = {}

    def inc(self, amount: float = 1) -> None:
        cells, me = self._by_thread, threading.get_ident()
        cells[me] = cells.get(me, 0) + amount

    def value(self) -> float:
        return sum(self._by_thread.copy().values())   # copy(): one atomic step under the GIL


class _Family:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str] = (),
                 read: Optional[Reader] = None):
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self.read = read
        self._children: Dict[Labels, object] = {}
        self._lock = threading.Lock()   # taken only when a new label set first appears
        if not self.label_names and read is None:
            self._children[()] = self._new_child()   # shown as 0 before anything is counted

    def labels(self, *values: str):
        """The child for these label values (created once, then found without a lock)."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.label_names):
                raise ValueError("%s takes labels %s" % (self.name, self.label_names))
            with self._lock:
                child = self._children.setdefault(values, self._new_child())
        return child

    def _new_child(self):
        raise NotImplementedError

    def samples(self) -> List[Tuple[str, Labels, Labels, float]]:
        """(name suffix, label names, label values, value) of each sample."""
        if self.read is not None:
            return [("", self.label_names, tuple(k), v) for k, v in sorted(self.read().items())]
        return [("", self.label_names, k, c.value()) for k, c in sorted(self._children.copy().items())]


class Counter(_Family):
    kind = "counter"

    def _new_child(self):
        return _Cell()

    def inc(self, amount: float = 1) -> None:
        """For a family without labels."""
        self.labels().inc(amount)


class Gauge(_Family):
    """A value set as it changes (`set`), or read at scrape time (`read`)."""
    kind = "gauge"

    def _new_child(self):
        return _Value()

    def set(self, value: float) -> None:
        self.labels().set(value)


class _Value:
    __slots__ = ("_value",)

    def __init__(self):
        self._value = 0.0

    def set(self, value: float) -> None:
        self._value = value   # one store: no lock needed

    def value(self) -> float:
        return self._value


class Histogram(_Family):
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (),
                 buckets: Sequence[float] = DEFAULT_BUCKETS):
        self.buckets = tuple(sorted(buckets))
        super().__init__(name, help, labels)

    def _new_child(self):
        return _Buckets(self.buckets)

    def observe(self, value: float) -> None:
        self.labels().observe(value)

    def samples(self):
        out = []
        for key, child in sorted(self._children.copy().items()):
            counts, total, count = child.snapshot()
            running = 0
            for bound, n in zip(self.buckets, counts):
                running += n
                out.append(("_bucket", self.label_names + ("le",), key + (_number(bound),), running))
            out.append(("_bucket", self.label_names + ("le",), key + ("+Inf",), count))
            out.append(("_sum", self.label_names, key, total))
            out.append(("_count", self.label_names, key, count))
        return out


class _Buckets:
    def __init__(self, bounds: Sequence[float]):
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total, self.count = 0.0, 0
        self.lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self.lock:
            for i, bound in enumerate(self.bounds):
                if value <= bound:
                    self.counts[i] += 1
                    break
            self.total += value
            self.count += 1

    def snapshot(self):
        with self.lock:
            return list(self.counts), self.total, self.count


class Registry:
    """The families of one program, in the order registered."""

    def __init__(self):
        self.families: List[_Family] = []

    def _add(self, family: _Family) -> _Family:
        if any(f.name == family.name for f in self.families):
            raise ValueError("metric %s registered twice" % family.name)
        self.families.append(family)
        return family

    def counter(self, name: str, help: str, labels: Sequence[str] = (),
                read: Optional[Reader] = None) -> Counter:
        return self._add(Counter(name, help, labels, read))

    def gauge(self, name: str, help: str, labels: Sequence[str] = (),
              read: Optional[Reader] = None) -> Gauge:
        return self._add(Gauge(name, help, labels, read))

    def histogram(self, name: str, help: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] = DEFAULT_BUCKETS) -> Histogram:
        return self._add(Histogram(name, help, labels, buckets))

    def exposition(self) -> str:
        """Every family in the Prometheus text format, version 0.0.4."""
        lines = []
        for family in self.families:
            lines.append("# HELP %s %s" % (family.name, _escape_help(family.help)))
            lines.append("# TYPE %s %s" % (family.name, family.kind))
            for suffix, names, values, value in family.samples():
                lines.append("%s%s%s %s" % (family.name, suffix, _labels(names, values), _number(value)))
        return "\n".join(lines) + "\n"


def http_response(registry: Registry):
    """The reply to GET /metrics."""
    from dfly.httpd import Response
    return Response(200, registry.exposition().encode(), {"Content-Type": CONTENT_TYPE})


def _labels(names: Labels, values: Labels) -> str:
    if not names:
        return ""
    return "{%s}" % ",".join('%s="%s"' % (n, _escape_value(str(v))) for n, v in zip(names, values))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
