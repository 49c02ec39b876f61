"""file:// sources: a shared filesystem (NFS and the like), read only under the
roots the operator lists (--source-file-root; none: file:// is refused), so a
client of the supernode cannot have it serve /etc/shadow. The path is resolved
(symlinks followed) before it is judged, and a path with `..` in it is refused
outright; the file is opened by its resolved name, so a link swapped in after
the check points nowhere new. The validator is mtime and size.
"""
import errno
import os
import stat
from email.utils import formatdate
from typing import Dict, Sequence
from urllib.parse import unquote, urlsplit

from dfly.errors import SourceDenied
from dfly.sources.answer import Stat, answer, http_error
from dfly.sources.config import SourceOptions


def open_url(url: str, headers: Dict[str, str], timeout_s: float, policy,
             options: SourceOptions):
    path = resolve(url, options.source_file_root)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        raise _os_error(url, e)
    handle = os.fdopen(fd, "rb")
    try:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise http_error(url, 404, "Not Found (not a regular file)", {})
    except BaseException:
        handle.close()
        raise
    found = Stat(st.st_size, '"%x-%x"' % (st.st_mtime_ns, st.st_size),
                 formatdate(st.st_mtime, usegmt=True))

    def open_at(offset: int):
        handle.seek(offset)
        return handle
    return answer(url, found, headers, open_at, handle.close)


def resolve(url: str, roots: Sequence[str]) -> str:
    """The real path `url` names when it lies under one of `roots`; SourceDenied if not."""
    if not roots:
        raise SourceDenied("file:// sources are refused: no --source-file-root is configured")
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise SourceDenied("file:// source refused: the URL names a host (%s); only local "
                           "paths are read" % parts.netloc[:80])
    path = unquote(parts.path)
    if not path.startswith("/") or ".." in path.split("/") or "\0" in path:
        raise SourceDenied("file:// source refused: the path must be absolute, without '..'")
    real = os.path.realpath(path)
    for root in roots:
        base = os.path.realpath(root)
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            return real
    raise SourceDenied("file:// source refused: the path is outside every --source-file-root "
                       "(symlinks are followed before this is judged)")


def _os_error(url: str, e: OSError):
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return http_error(url, 404, "Not Found", {})
    if e.errno in (errno.EACCES, errno.EPERM):
        return http_error(url, 403, "Forbidden (denied: the supernode may not read it)", {})
    return e
