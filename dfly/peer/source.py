"""Back to source: download a URL straight from the origin into a PieceFile.

Used when no supernode answers (and --no-back-source is not given). The file is
written in order; the caller checks the whole-file digest and renames.
"""
import time
from typing import Callable, Dict, Optional

from dfly import __version__
from dfly.errors import DownloadTimeout, SourceError
from dfly.peer.storage import PieceFile
from dfly.protocol.pieces import piece_count, piece_size_for
from dfly.protocol.ratelimit import TokenBucket

CHUNK = 1 << 20


def download_from_source(url: str, headers: Dict[str, str], out: PieceFile, timeout_s: float,
                         bucket: Optional[TokenBucket] = None,
                         on_bytes: Callable[[int], None] = lambda n: None,
                         clock: Callable[[], float] = time.monotonic,
                         deadline: Optional[float] = None) -> int:
    """Stream `url` into `out`; returns the byte count. SourceError on any origin
    failure, DownloadTimeout when `deadline` passes first (a stalled origin too)."""
    # Imported here, not at the top: a get through a supernode never needs
    # urllib.request and what it imports, which every start would pay for.
    import http.client
    import urllib.error
    headers = dict(headers)
    headers.setdefault("User-Agent", "dfly/" + __version__)
    if deadline is not None:
        timeout_s = max(0.01, min(timeout_s, deadline - clock()))
    try:
        response = _open(url, headers, timeout_s, deadline, clock)
    except DownloadTimeout:
        raise
    except urllib.error.HTTPError as e:
        e.close()
        raise SourceError("origin answered %d %s for %s" % (e.code, e.reason, url))
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise SourceError("cannot reach origin for %s: %s" % (url, getattr(e, "reason", e)))
    except http.client.HTTPException as e:   # a garbage status line, over 100 headers...
        how = ("cannot request the source" if isinstance(e, http.client.InvalidURL)
               else "origin broke the HTTP protocol")
        raise SourceError("%s for %s: %s: %s" % (how, url, type(e).__name__, str(e).strip()[:200] or "-"))
    with response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        offset = 0
        while True:
            try:
                chunk = response.read(CHUNK)
            except Exception as e:   # socket errors, IncompleteRead
                _check_deadline(deadline, clock, offset)
                raise SourceError("origin transfer broke after %d bytes: %s" % (offset, e))
            if not chunk:
                break
            out.write(offset, chunk)
            offset += len(chunk)
            on_bytes(len(chunk))
            if bucket is not None:
                delay = bucket.reserve(len(chunk), clock())
                if delay > 0:
                    time.sleep(delay)
    if expected is not None and offset != expected:
        raise SourceError("origin sent %d of %d bytes for %s" % (offset, expected, url))
    size = piece_size_for(offset)
    out.set_geometry(offset, size)
    for num in range(piece_count(offset, size)):
        out.mark_held(num)
    return offset


def _open(url: str, headers: Dict[str, str], timeout_s: float, deadline: Optional[float], clock):
    import http.client
    import urllib.error
    import urllib.request

    from dfly.protocol import redirects
    try:
        return redirects.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        if not isinstance(e, urllib.error.HTTPError):
            _check_deadline(deadline, clock, 0)
        raise


def _check_deadline(deadline: Optional[float], clock, offset: int) -> None:
    if deadline is not None and clock() >= deadline - 0.05:
        raise DownloadTimeout("download timed out after %d bytes from the source" % offset)
