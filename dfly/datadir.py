"""The data dir: where dfly keeps its data when no --data-dir is given (the
per-user data dir, XDG_DATA_HOME/dfly, else ~/.local/share/dfly; never the
current directory), making it, and one live process per data dir.

A supernode, a daemon, `dfly scrub` and `dfly import` each write and repair the
files of a data dir; two at once race (a scrub removing a file the daemon is
serving, two supernodes cutting one task). So each holds an exclusive flock on
DATA_DIR/<kind>.lock (kind: `supernode` or `daemon`, the data it works on) for
as long as it works there, and one that finds it held stops with one line
naming the holder. The kernel lets go of a flock when its process ends, however
it ends: a lock file left behind means nothing, only a held lock counts. The
file holds "PID PROGRAM" of its holder, for that line.

flock is Unix (Linux, macOS, the BSDs); where Python has no fcntl (Windows)
no lock is taken and nothing is refused.
"""
import os
from typing import Mapping, Optional

from dfly.errors import DataDirInUse, LocalIOError

try:
    import fcntl
except ImportError:   # not Unix: no locks
    fcntl = None   # type: ignore


def default_data_dir(environ: Mapping[str, str]) -> str:
    if environ.get("DFLY_DATA_DIR"):
        return environ["DFLY_DATA_DIR"]
    base = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "dfly")


def make_data_dir(path: str) -> str:
    """`path` made if missing (absolute); LocalIOError, one line, when it cannot be,
    before anything is started."""
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise LocalIOError("cannot use data dir %s: %s" % (path, e.strerror or e))
    if not os.access(path, os.W_OK | os.X_OK):
        raise LocalIOError("cannot use data dir %s: not writable" % path)
    return path


def lock_path(data_dir: str, kind: str) -> str:
    return os.path.join(data_dir, kind + ".lock")


class DataDirLock:
    """A held lock; `release` (or the end of the process) lets it go."""

    def __init__(self, fd: Optional[int]):
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)   # closing the only descriptor drops the flock


def hold(data_dir: str, kind: str, program: str) -> DataDirLock:
    """The lock on `data_dir` for data of `kind`, held by `program` (as the holder is
    named to whoever finds it held); DataDirInUse when another process holds it."""
    if fcntl is None:
        return DataDirLock(None)
    os.makedirs(data_dir, exist_ok=True)
    path = lock_path(data_dir, kind)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)   # not inherited by children (PEP 446)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise DataDirInUse("data dir %s is in use by %s" % (data_dir, holder))
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, ("%d %s\n" % (os.getpid(), program)).encode(), 0)
    return DataDirLock(fd)


def _holder(fd: int) -> str:
    """"PROGRAM (pid PID)" from the lock file; "another process" if it says nothing yet."""
    try:
        pid, _, program = os.pread(fd, 200, 0).decode("utf-8", "replace").strip().partition(" ")
    except OSError:
        return "another process"
    if not pid.isdigit():
        return "another process"
    return "%s (pid %s)" % (program or "another process", pid)
