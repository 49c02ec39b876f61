"""Sources: where a task's bytes come from, one module per kind, chosen by the
URL's scheme in one table (Kraken's lib/backend is the model).

Every source answers the one question the fetchers ask, in the words HTTP
already has for it, so the supernode's CDN, `get`'s back-to-source and its
piece-level fill read any source as they read http:
- open: `open_source(url, headers, timeout_s, policy, options)` returns a
  response (`status`, `headers`, `read(n)`, a context manager);
- size and validators: `Content-Length` (`Content-Range` on a 206), `ETag`
  and `Last-Modified` (FTP: MDTM and SIZE; file: mtime and size; S3: ETag);
- read from an offset: a `Range: bytes=N-` request header (FTP: REST; file:
  seek; S3: a ranged GET);
- whether it changed: `If-Range` (the range only if the validator still
  matches, else the whole new content with 200) and `If-None-Match` /
  `If-Modified-Since` (unchanged: HTTPError 304).
Failures are typed as http's are: urllib's HTTPError (403 denied, 404 not
found), OSError (unreachable), SourceError (a clear sentence), SourceDenied
(the source policy). Modules are imported when a URL of theirs is opened: a
`get` through a supernode loads none of them.
"""
import importlib
from typing import Dict, Optional

from dfly.errors import SourceError
from dfly.sources.config import SourceOptions

MODULES = {"http": "http", "https": "http", "ftp": "ftp", "ftps": "ftp", "file": "file",
           "s3": "s3"}


def open_source(url: str, headers: Optional[Dict[str, str]] = None, timeout_s: float = 30.0,
                policy=None, options: SourceOptions = SourceOptions()):
    """The source `url` as a response (see the module's strategy); with `policy`
    (the supernode's), every host and address is judged by it first."""
    scheme = url.partition(":")[0].lower()
    if scheme not in MODULES:
        raise SourceError("scheme %r is not a source dfly reads (%s)"
                          % (scheme[:20], ", ".join(sorted(MODULES))))
    module = importlib.import_module("dfly.sources." + MODULES[scheme])
    return module.open_url(url, dict(headers or {}), timeout_s, policy, options)
