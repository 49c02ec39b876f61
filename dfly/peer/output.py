"""Where a finished download goes: the user's `-o` path, as curl and wget users expect.

Nothing, or a regular file, at the path: the bytes go to a temporary name beside
it, renamed over it once complete and verified. A symlink is followed: the file
it points to is replaced (atomically, there) and the link stays a link. A
character or block device, a FIFO or a socket is written to in order, as `-o -`
writes stdout, and never replaced: `-o /dev/null` must not turn the host's
/dev/null into a regular file. A directory is an error before anything starts.
A path naming one of this process's descriptors (/dev/stdout, /dev/fd/63 from a
shell's `>(...)`, /proc/self/fd/N) is written through that descriptor, as it is
open (a pipe, a file opened for appending), never looked up and replaced.
Used by `dfly get` in its own process and by the daemon's hand-off.
"""
import errno
import os
import re
import stat
import time
from typing import BinaryIO, Optional, Tuple

from dfly import errors
from dfly.peer.progress import human_duration

_NAMED_DESCRIPTORS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
_DESCRIPTOR_PATH = re.compile(r"/(?:dev/fd|proc/self/fd)/(\d{1,6})")


def descriptor_of(path: str) -> Optional[int]:
    """The descriptor of this process that `path` names (/dev/stdout, /dev/fd/N,
    /proc/self/fd/N), or None."""
    path = os.path.abspath(path)
    if path in _NAMED_DESCRIPTORS:
        return _NAMED_DESCRIPTORS[path]
    found = _DESCRIPTOR_PATH.fullmatch(path)
    return int(found.group(1)) if found else None


def resolve(path: str) -> Tuple[str, bool]:
    """(the path to write, True when it is written to in order rather than replaced).
    LocalIOError for a directory or a path that cannot be looked at."""
    if descriptor_of(path) is not None:
        return os.path.abspath(path), True
    if path.endswith(os.sep):   # abspath would drop the slash, and a file would be made there
        raise errors.LocalIOError("%s is a directory; give -o a file name" % path)
    target = os.path.realpath(os.path.abspath(path))
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target, False
    except OSError as e:
        raise errors.LocalIOError("cannot write %s: %s" % (path, e.strerror or e))
    if stat.S_ISDIR(mode):
        raise errors.LocalIOError("%s is a directory; give -o a file name" % path)
    return target, not stat.S_ISREG(mode)


def temp_name(target: str, tag: str) -> str:
    """The temporary name beside `target` its bytes are written under until complete."""
    return os.path.join(os.path.dirname(target), ".%s.%s.dfly-part" % (os.path.basename(target), tag))


def open_in_order(target: str, shown: str, wait_s: Optional[float] = None) -> BinaryIO:
    """`target` (a device, FIFO...) opened for writing: never created, never truncated.
    A FIFO waits here for its reader, as it does for curl; with `wait_s`, that long at
    most (DownloadTimeout then: the daemon, which must not hang on a reader that never
    comes after the get that asked gave up)."""
    fd = descriptor_of(target)
    try:
        if fd is not None:   # as it is open: its offset, its append mode
            return os.fdopen(os.dup(fd), "wb")
        if wait_s is not None and stat.S_ISFIFO(os.stat(target).st_mode):
            return os.fdopen(_open_fifo_within(target, shown, wait_s), "wb")
        return os.fdopen(os.open(target, os.O_WRONLY), "wb")
    except OSError as e:
        raise errors.LocalIOError("cannot write %s: %s" % (shown, e.strerror or e))


FIFO_POLL_S = 0.05


def _open_fifo_within(target: str, shown: str, wait_s: float) -> int:
    """The FIFO opened for writing once a reader has it open (a non-blocking open fails
    with ENXIO until then), then made blocking again for the writes."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
        if time.monotonic() >= deadline:
            raise errors.DownloadTimeout("download timed out: nothing read from %s within %s"
                                         % (shown, human_duration(wait_s)))
        time.sleep(FIFO_POLL_S)   # no event says a reader came: poll, bounded by wait_s
    os.set_blocking(fd, True)
    return fd


def write(out: BinaryIO, data: bytes, shown: str) -> None:
    try:
        out.write(data)
    except OSError as e:   # /dev/full, a FIFO whose reader went away
        raise errors.LocalIOError("cannot write %s: %s" % (shown, e.strerror or e))


def close(out: BinaryIO, shown: str, quietly: bool = False) -> None:
    """Flush and close; `quietly` after another error (that one is what the user is told)."""
    try:
        out.close()
    except OSError as e:
        if quietly:
            return
        raise errors.LocalIOError("cannot write %s: %s" % (shown, e.strerror or e))
