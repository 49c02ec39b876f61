"""HTTP's answer for a source that is not HTTP (FTP, a file): from its size and
validators and the request's Range / If-Range / If-None-Match /
If-Modified-Since, which status (200, 206, or HTTPError 304 / 416) and which
headers, as an origin server would give them; the body is read from the
offset asked for.

A body is passed on as the source sends it, not cut at the size it reported:
an FTP server whose SIZE lies is caught, not trusted. More bytes than said is
an error here; fewer is caught by the fetchers' own length check.
"""
import email.message
import io
import re
import urllib.error
from dataclasses import dataclass
from typing import Callable, Dict, Optional

from dfly.errors import SourceError
from dfly.protocol.units import received

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass(frozen=True)
class Stat:
    size: int
    etag: str = ""            # a strong validator, quoted
    last_modified: str = ""   # an HTTP date

    @property
    def validator(self) -> str:
        return self.etag or self.last_modified


class Response:
    """What urllib's responses offer the fetchers: status, headers, read, close."""

    def __init__(self, url: str, status: int, headers: Dict[str, str], body,
                 length: Optional[int], cut: bool, on_close: Callable[[], None]):
        self.url = url
        self.status = self.code = status
        self.headers = email.message.Message()
        for name, value in headers.items():
            self.headers[name] = value
        self._body = body
        self._left = length      # bytes the answer said it holds
        self._cut = cut          # a bounded range: stop there; else more is an error
        self._on_close = on_close
        self._sent = 0

    def read(self, size: int = -1) -> bytes:
        return self._read(size, self._body.read)

    def read1(self, size: int = -1) -> bytes:
        """What is at hand, at most `size` (one read of the body, as http's read1)."""
        return self._read(size, getattr(self._body, "read1", self._body.read))

    def _read(self, size: int, read) -> bytes:
        if self._left is not None and self._cut:
            size = self._left if size < 0 else min(size, self._left)
            if size == 0:
                return b""
        chunk = read(size)
        self._sent += len(chunk)
        if self._left is not None:
            self._left -= len(chunk)
            if self._left < 0:
                raise SourceError("the source sent more than the %s it said it holds (%s)"
                                  % (received(self._sent + self._left, None), self.url))
        return chunk

    def getcode(self) -> int:
        return self.status

    def geturl(self) -> str:
        return self.url

    def close(self) -> None:
        on_close, self._on_close = self._on_close, lambda: None
        on_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def answer(url: str, stat: Stat, headers: Dict[str, str], open_at: Callable[[int], object],
           on_close: Callable[[], None]) -> Response:
    """The response to a GET of `url` with `headers` for a source like `stat`;
    `open_at(offset)` gives its body from `offset` (read(n), close()). HTTPError
    304 (not modified) and 416 (a range past the end) as an origin would."""
    got = {k.lower(): v for k, v in headers.items()}
    same = {"ETag": stat.etag, "Last-Modified": stat.last_modified}
    if _not_modified(got, stat):
        on_close()
        raise http_error(url, 304, "Not Modified", same)
    start, end = _range(got, stat)
    if start is not None and start >= max(stat.size, 1):
        on_close()
        raise http_error(url, 416, "Range Not Satisfiable", {"Content-Range": "bytes */%d" % stat.size})
    fields = {k: v for k, v in same.items() if v}
    if start is None:
        status, length, cut = 200, stat.size, False
        fields["Content-Length"] = str(stat.size)
    else:
        last = stat.size - 1 if end is None else min(end, stat.size - 1)
        status, length, cut = 206, last - start + 1, end is not None and end < stat.size - 1
        fields["Content-Length"] = str(length)
        fields["Content-Range"] = "bytes %d-%d/%d" % (start, last, stat.size)
    try:
        body = open_at(start or 0)
    except BaseException:
        on_close()
        raise

    def close() -> None:
        try:
            body.close()
        finally:
            on_close()
    return Response(url, status, fields, body, length, cut, close)


def _not_modified(got: Dict[str, str], stat: Stat) -> bool:
    if "if-none-match" in got:
        return bool(stat.etag) and got["if-none-match"] == stat.etag
    return bool(stat.last_modified) and got.get("if-modified-since") == stat.last_modified


def _range(got: Dict[str, str], stat: Stat):
    """(start, end or None) of a Range that applies; (None, None) for the whole."""
    m = _RANGE.match(got.get("range", "").replace(" ", ""))
    if m is None:
        return None, None
    if "if-range" in got and got["if-range"] != stat.validator:
        return None, None   # changed since: the whole new content
    return int(m.group(1)), int(m.group(2)) if m.group(2) else None


def http_error(url: str, code: int, reason: str, fields: Dict[str, str]) -> urllib.error.HTTPError:
    hdrs = email.message.Message()
    for name, value in fields.items():
        if value:
            hdrs[name] = value
    return urllib.error.HTTPError(url, code, reason, hdrs, io.BytesIO(b""))
