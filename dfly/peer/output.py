"""Where a finished download goes: the user's `-o` path, as curl and wget users expect.

Nothing, or a regular file, at the path: the bytes go to a temporary name beside
it, renamed over it once complete and verified. A symlink is followed: the file
it points to is replaced (atomically, there) and the link stays a link. A
character or block device, a FIFO or a socket is written to in order, as `-o -`
writes stdout, and never replaced: `-o /dev/null` must not turn the host's
/dev/null into a regular file. A directory is an error before anything starts.
Used by `dfly get` in its own process and by the daemon's hand-off.
"""
import os
import stat
from typing import BinaryIO, Tuple

from dfly import errors


def resolve(path: str) -> Tuple[str, bool]:
    """(the path to write, True when it is written to in order rather than replaced).
    LocalIOError for a directory or a path that cannot be looked at."""
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


def open_in_order(target: str, shown: str) -> BinaryIO:
    """`target` (a device, FIFO...) opened for writing: never created, never truncated.
    A FIFO waits here for its reader, as it does for curl."""
    try:
        return os.fdopen(os.open(target, os.O_WRONLY), "wb")
    except OSError as e:
        raise errors.LocalIOError("cannot write %s: %s" % (shown, e.strerror or e))


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
