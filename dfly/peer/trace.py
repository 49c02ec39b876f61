"""`dfly get --trace FILE`: a JSON record of one download, for looking at after.

What it holds (times in seconds since `started`, the process's start; `wall_start`
is that moment as a Unix time, so traces of several hosts line up):
  events     process_start, registered (supernode, task, latency, parallel: the
             download's slots), schedule_retry (a schedule call that timed
             out while pieces still arrived, made again: supernode, waited_s),
             source_fallback, digest_check (seconds, ok), finished / failed
  schedules  every schedule call: when, latency_s, waited_s (the supernode held
             it on purpose), want, pieces assigned, pieces reported; `reporter`
             for the calls that only report while the main one long-polls
  pieces     every piece fetched: num, holder (a peer id, or "supernode"), addr,
             bytes, start_s, end_s, verify_s, ok (and error when not), relay (the
             holder was still fetching it when asked: cut-through)
Traces before `parallel` and `relay` lack them (bench/tracefiles.py reads both).
A piece's bytes are hashed as they arrive, so its verify cost is inside
start..end; verify_s is what was left after the last byte (the digest compare
and marking it held).

Recording takes one lock per call (a schedule call, a piece: never per byte).
The file is written like any output: to a temporary name beside it, then renamed.
"""
import json
import os
import threading
import time
from typing import Callable, List, Optional

from dfly import errors
from dfly.protocol.redact import redact_url

FORMAT = 1


class Trace:
    def __init__(self, started: Optional[float] = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.clock = clock
        now = clock()
        self.started = now if started is None else started
        self.wall_start = wall() - (now - self.started)
        self._lock = threading.Lock()
        self.info: dict = {}
        self.events: List[dict] = []
        self.schedules: List[dict] = []
        self.pieces: List[dict] = []
        self.event("process_start", at=0.0)

    def since(self, moment: Optional[float] = None) -> float:
        return round((self.clock() if moment is None else moment) - self.started, 6)

    def event(self, kind: str, at: Optional[float] = None, **fields) -> None:
        entry = dict(t=self.since() if at is None else at, kind=kind, **fields)
        with self._lock:
            self.events.append(entry)

    def described(self, **fields) -> None:
        """What the download is: url (redacted here), output, peer id, ..."""
        if "url" in fields:
            fields["url"] = redact_url(fields["url"])
        with self._lock:
            self.info.update(fields)

    def schedule(self, began: float, ended: float, waited_s: Optional[float], want: int,
                 assigned: int, reported: int, reporter: bool = False) -> None:
        entry = {"t": self.since(began), "latency_s": round(ended - began, 6),
                 "waited_s": waited_s, "want": want, "assigned": assigned, "reported": reported}
        if reporter:
            entry["reporter"] = True
        with self._lock:
            self.schedules.append(entry)

    def piece(self, num: int, holder: str, addr: str, size: int, began: float, received: float,
              settled: float, error: Optional[str] = None, relay: bool = False) -> None:
        entry = {"num": num, "holder": holder, "addr": addr, "bytes": size,
                 "start_s": self.since(began), "end_s": self.since(received),
                 "verify_s": round(max(0.0, settled - received), 6), "ok": error is None,
                 "relay": relay}
        if error is not None:
            entry["error"] = error[:200]
        with self._lock:
            self.pieces.append(entry)

    def record(self) -> dict:
        with self._lock:
            return {"format": FORMAT, "wall_start": round(self.wall_start, 6), **self.info,
                    "events": list(self.events), "schedules": list(self.schedules),
                    "pieces": list(self.pieces)}


class NoTrace:
    """Stands in when no --trace was asked for: records nothing."""

    clock = staticmethod(time.monotonic)

    def event(self, kind: str, at: Optional[float] = None, **fields) -> None:
        pass

    def schedule(self, *args, **kwargs) -> None:
        pass

    def piece(self, *args, **kwargs) -> None:
        pass


NO_TRACE = NoTrace()


def check_trace_path(path: str) -> str:
    """--trace FILE, checked before any download (LocalIOError, exit 6): its folder
    exists and takes a file; FILE is not a folder. The absolute path."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise errors.LocalIOError("trace file folder %s does not exist" % folder)
    if os.path.isdir(path):
        raise errors.LocalIOError("trace file %s is a directory" % path)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise errors.LocalIOError("cannot write the trace file in %s: permission denied" % folder)
    return path


def write_trace(trace: Trace, path: str) -> None:
    """The trace as JSON at `path`, via a temporary name beside it."""
    temp = "%s.%d.tmp" % (path, os.getpid())
    try:
        with open(temp, "w") as f:
            json.dump(trace.record(), f, indent=1)
            f.write("\n")
        os.replace(temp, path)
    except OSError as e:
        try:
            os.remove(temp)
        except OSError:
            pass
        raise errors.LocalIOError("cannot write the trace file %s: %s" % (path, e.strerror or e))
