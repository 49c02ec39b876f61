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

A temporary file is locked (flock) by its writer from creation until it is
closed, so the lock dies with a killed writer: before writing, the parts of
the same target that nobody holds (left by a SIGKILLed get or a crash) are
removed, and parts still being written are left alone.
"""
import errno
import fcntl
import os
import re
import stat
import time
from typing import BinaryIO, Callable, Optional, Tuple

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


PART_TAG = re.compile(r"[0-9a-f]{1,32}\Z")
CREATE_TRIES = 8   # another try only when a sweep took the new file before its lock did


def create_part(target: str, tag: str, shown: str) -> Tuple[str, int]:
    """(path, fd) of a new temporary file beside `target`, locked for as long as `fd`
    is open. `tag` (hex) makes the name; a retry adds to it."""
    return create_locked(lambda attempt: temp_name(target, tag + ("%x" % attempt if attempt else "")),
                         shown)


def create_locked(name_for: Callable[[int], str], shown: str) -> Tuple[str, int]:
    """(path, fd) of a new file named `name_for(attempt)`, locked (flock) for as long as
    `fd` (or a dup of it) is open. LocalIOError when it cannot be created."""
    for attempt in range(CREATE_TRIES):
        path = name_for(attempt)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            raise errors.LocalIOError("cannot write %s: %s" % (shown, e.strerror or e))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)   # waits only while a sweep holds this very file
        except OSError:   # a filesystem without locks: no sweep takes anything there either
            return path, fd
        if _same_file(path, fd):
            return path, fd
        os.close(fd)   # a sweep took it between open and lock: it is gone, take another name
    raise errors.LocalIOError("cannot write %s: its temporary files keep disappearing" % shown)


def remove_unheld(folder: str, suffix: str) -> int:
    """Remove the files named *`suffix` in `folder` that nobody holds locked (temporary
    files of writers that are gone); the number removed."""
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    return sum(_remove_if_unheld(os.path.join(folder, n)) for n in names if n.endswith(suffix))


def remove_stale_parts(target: str) -> int:
    """Remove the temporary files of `target` whose writer is gone (nobody holds their
    lock); the number removed. Never fails: a part it cannot judge is left."""
    folder, base = os.path.split(target)
    prefix, suffix = ".%s." % base, ".dfly-part"
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return 0
    removed = 0
    for name in names:
        if name.startswith(prefix) and name.endswith(suffix) \
                and PART_TAG.match(name[len(prefix):-len(suffix)]):
            removed += _remove_if_unheld(os.path.join(folder, name))
    return removed


def _remove_if_unheld(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not (_same_file(path, fd) and stat.S_ISREG(os.fstat(fd).st_mode)):
            return 0
        os.remove(path)
        return 1
    except OSError:   # held: a download under way; or already gone
        return 0
    finally:
        os.close(fd)


def _same_file(path: str, fd: int) -> bool:
    try:
        there, held = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return (there.st_dev, there.st_ino) == (held.st_dev, held.st_ino)


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
