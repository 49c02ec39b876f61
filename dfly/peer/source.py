"""Back to source: download a URL straight from the origin into a PieceFile.

Used when no supernode answers (and --no-back-source is not given): the file
is written in order; the caller checks the whole-file digest and renames.

When P2P delivered part of the file before it failed (its supernode died, a
piece failed on every holder), only the missing pieces are fetched: one
`Range` request per run of adjacent missing pieces, with `If-Range` naming
the version the swarm served, each piece checked against the digest the
supernode gave for it where we know one. A source that ignores Range, or
answers If-Range with the whole (changed) file, gets the whole file read from
that same answer, replacing what P2P delivered, so a file is never mixed from
two versions.
"""
import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from dfly import __version__
from dfly.errors import DownloadTimeout, SourceError
from dfly.peer.progress import received
from dfly.peer.storage import PieceFile
from dfly.protocol.pieces import piece_count, piece_range, piece_size_for
from dfly.protocol.ratelimit import TokenBucket
from dfly.sources.config import SourceOptions

CHUNK = 1 << 20


@dataclass
class Fill:
    """What the P2P part of a download knows that a piece-level fallback uses."""
    digests: Dict[int, str] = field(default_factory=dict)   # piece -> sha256 hex, as the supernode said
    validator: Optional[str] = None   # the source version the swarm served: strong ETag or date


class _Reader:
    """One download's source reads: timeouts, deadline, rate limit, byte count."""

    def __init__(self, url: str, headers: Dict[str, str], timeout_s: float,
                 bucket: Optional[TokenBucket], on_bytes: Callable[[int], None], clock,
                 deadline: Optional[float], options: SourceOptions = SourceOptions()):
        self.url = url
        self.options = options
        self.headers = dict(headers)
        self.headers.setdefault("User-Agent", "dfly/" + __version__)
        self.timeout_s = timeout_s
        self.bucket = bucket
        self.on_bytes = on_bytes
        self.clock = clock
        self.deadline = deadline
        self.total: Optional[int] = None   # the file's length, once known: for a timeout's words

    def open(self, extra: Optional[Dict[str, str]] = None):
        # Imported here, not at the top: a get through a supernode never needs
        # urllib.request and what it imports, which every start would pay for.
        import http.client
        import urllib.error
        timeout_s = self.timeout_s
        if self.deadline is not None:
            timeout_s = max(0.01, min(timeout_s, self.deadline - self.clock()))
        try:
            return _open(self.url, dict(self.headers, **(extra or {})), timeout_s, self.deadline,
                         self.clock, self.options)
        except DownloadTimeout:
            raise
        except urllib.error.HTTPError as e:
            e.close()
            raise SourceError("origin answered %d %s for %s" % (e.code, e.reason, self.url))
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise SourceError("cannot reach origin for %s: %s" % (self.url, getattr(e, "reason", e)))
        except http.client.HTTPException as e:   # a garbage status line, over 100 headers...
            how = ("cannot request the source" if isinstance(e, http.client.InvalidURL)
                   else "origin broke the HTTP protocol")
            raise SourceError("%s for %s: %s: %s" % (how, self.url, type(e).__name__,
                                                     str(e).strip()[:200] or "-"))

    def read(self, response, size: int, offset: int) -> bytes:
        try:
            chunk = response.read(size)
        except Exception as e:   # socket errors, IncompleteRead
            _check_deadline(self.deadline, self.clock, offset, self.total)
            raise SourceError("origin transfer broke after %s: %s" % (received(offset, None), e))
        if chunk:
            self.on_bytes(len(chunk))
            if self.bucket is not None:
                delay = self.bucket.reserve(len(chunk), self.clock())
                if delay > 0:
                    time.sleep(delay)
        return chunk


def download_from_source(url: str, headers: Dict[str, str], out: PieceFile, timeout_s: float,
                         bucket: Optional[TokenBucket] = None,
                         on_bytes: Callable[[int], None] = lambda n: None,
                         clock: Callable[[], float] = time.monotonic,
                         deadline: Optional[float] = None,
                         options: SourceOptions = SourceOptions()) -> int:
    """Stream `url` into `out`; returns the byte count. SourceError on any origin
    failure, DownloadTimeout when `deadline` passes first (a stalled origin too)."""
    reader = _Reader(url, headers, timeout_s, bucket, on_bytes, clock, deadline, options)
    with reader.open() as response:
        return _whole(reader, response, out)


def fill_from_source(url: str, headers: Dict[str, str], out: PieceFile, fill: Fill,
                     timeout_s: float, bucket: Optional[TokenBucket] = None,
                     on_bytes: Callable[[int], None] = lambda n: None,
                     on_replace: Callable[[str, bool], None] = lambda reason, changed: None,
                     clock: Callable[[], float] = time.monotonic,
                     deadline: Optional[float] = None,
                     options: SourceOptions = SourceOptions()) -> None:
    """Fetch the pieces `out` lacks (its geometry known) by Range. When the source
    cannot give them (no Range support, a changed file), `on_replace(reason,
    changed)` is called (it may raise) and the whole file is read instead,
    replacing every piece held."""
    reader = _Reader(url, headers, timeout_s, bucket, on_bytes, clock, deadline, options)
    extra = {"If-Range": fill.validator} if fill.validator else {}
    for first, last in missing_runs(out):
        start = first * out.piece_size
        end = min(out.length, (last + 1) * out.piece_size)
        with reader.open(dict(extra, Range="bytes=%d-%d" % (start, end - 1))) as response:
            why = _not_our_range(response, start, end, out.length, fill.validator)
            if why is None:
                why = _pieces(reader, response, out, first, last, fill.digests)
            if why is not None:
                on_replace(*why)
                if getattr(response, "status", 200) == 200:
                    _whole(reader, response, out)   # the answer is the whole file already
                else:
                    with reader.open() as whole:
                        _whole(reader, whole, out)
                return


def missing_runs(out: PieceFile) -> List[Tuple[int, int]]:
    """(first, last) of each run of adjacent pieces `out` does not hold."""
    runs: List[Tuple[int, int]] = []
    for num in range(piece_count(out.length, out.piece_size)):
        if out.has(num):
            continue
        if runs and runs[-1][1] == num - 1:
            runs[-1] = (runs[-1][0], num)
        else:
            runs.append((num, num))
    return runs


def _not_our_range(response, start: int, end: int, length: int,
                   validator: Optional[str]) -> Optional[Tuple[str, bool]]:
    """None when `response` is the byte range asked for; else (why not in words,
    whether the source changed)."""
    status = getattr(response, "status", 200)
    crange = response.headers.get("Content-Range", "")
    if status == 206:
        if crange == "bytes %d-%d/%d" % (start, end - 1, length):
            return None
        if not crange.endswith("/%d" % length):
            return "the source's length changed (%s)" % crange, True
        return "the source answered a Range request with another range (%s)" % crange, False
    now = response.headers.get("ETag") if validator and validator.startswith('"') else None
    now = now or response.headers.get("Last-Modified")
    if validator and now and now != validator:
        return "the source changed since the swarm read it (%s, was %s)" % (now, validator), True
    return "the source does not support Range requests", False


def _pieces(reader: _Reader, response, out: PieceFile, first: int, last: int,
            digests: Dict[int, str]) -> Optional[Tuple[str, bool]]:
    """Read pieces first..last from a 206 body into `out`, each checked against its
    digest where known; None when all were good, else why not."""
    reader.total = out.length
    for num in range(first, last + 1):
        start, size = piece_range(num, out.length, out.piece_size)
        hasher, got = hashlib.sha256(), 0
        while got < size:
            chunk = reader.read(response, min(CHUNK, size - got), start + got)
            if not chunk:
                raise SourceError("origin sent %s of piece %d for %s"
                                  % (received(got, size), num, reader.url))
            hasher.update(chunk)
            out.write(start + got, chunk)
            got += len(chunk)
        want = digests.get(num)
        if want is not None and hasher.hexdigest() != want:
            return "piece %d from the source differs from the swarm's: the source changed" % num, True
        out.mark_held(num)
    return None


def _whole(reader: _Reader, response, out: PieceFile) -> int:
    """Read a 200 answer from its first byte into `out`; the byte count."""
    length = response.headers.get("Content-Length")
    expected = out.expected_length = int(length) if length and length.isdigit() else None
    reader.total = expected
    out.forget()
    offset = 0
    while True:
        chunk = reader.read(response, CHUNK, offset)
        if not chunk:
            break
        out.write(offset, chunk)
        offset += len(chunk)
    if expected is not None and offset != expected:
        raise SourceError("origin sent %s for %s" % (received(offset, expected), reader.url))
    size = piece_size_for(offset)
    out.set_geometry(offset, size)
    for num in range(piece_count(offset, size)):
        out.mark_held(num)
    return offset


def _open(url: str, headers: Dict[str, str], timeout_s: float, deadline: Optional[float], clock,
          options: SourceOptions):
    import http.client
    import urllib.error

    from dfly.sources import open_source
    try:
        return open_source(url, headers, timeout_s, None, options)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        if not isinstance(e, urllib.error.HTTPError):
            _check_deadline(deadline, clock, 0)
        raise


def _check_deadline(deadline: Optional[float], clock, offset: int, total: Optional[int] = None) -> None:
    if deadline is not None and clock() >= deadline - 0.05:
        raise DownloadTimeout("download timed out after %s" % received(offset, total))
