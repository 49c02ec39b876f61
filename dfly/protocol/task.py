"""Task identity: which downloads are "the same file".

A task is the source URL with the query parameters named by --filter removed
(signed URLs differ per client but name one file), plus an optional expected
digest or identifier. Its id is sha256 over those, hex: safe in a path, and
validated by TASK_ID before anything uses an id from the wire.

Content-addressed downloads (registry blobs) give the digest as the identifier
too: then the digest alone is the task, so one layer pulled from two
repositories or two registries is one task and crosses the network once.
"""
import hashlib
import re
from typing import Iterable, Optional
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from dfly.errors import BadRequest

TASK_ID = re.compile(r"\A[0-9a-f]{64}\Z")
PEER_ID = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")


def filtered_url(url: str, filters: Iterable[str] = ()) -> str:
    """`url` without the query parameters named in `filters`; BadRequest when
    `url` does not parse (an unclosed "[" of an IPv6 host)."""
    drop = {f for f in filters if f}
    if not drop:
        return url
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise BadRequest("bad URL %r: %s" % (url[:200], e))
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in drop]
    return urlunsplit(parts._replace(query=urlencode(query)))


def task_id(url: str, filters: Iterable[str] = (), digest: Optional[str] = None,
            identifier: Optional[str] = None) -> str:
    """The id of the task that downloads `url`."""
    if digest and identifier and identifier.lower() == digest.lower():
        return hashlib.sha256(("content\n" + digest.lower()).encode("utf-8")).hexdigest()
    key = "\n".join([filtered_url(url, filters), digest or "", identifier or ""])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def split_filters(values: Iterable[str]) -> list:
    """Filter names from repeated --filter values, each also '&' or ',' separated."""
    names = []
    for value in values:
        names.extend(n for n in re.split(r"[&,]", value) if n)
    return names
