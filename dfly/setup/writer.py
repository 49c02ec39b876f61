"""The one place `dfly setup` touches files: all or nothing, undoable exactly.

Before a file is changed for the first time its bytes are copied to
FILE.dfly-backup; a file that did not exist gets FILE.dfly-created instead
(listing the folders made for it). Each file is written to a temporary name
beside it and renamed over it, so a reader sees the old file or the new one.
If any step fails (a read-only root, a full disk), what this run already did
is put back before the error is raised: nothing is left half-changed. A
backup is never overwritten, so it always holds the file as it was before the
first `dfly setup`. Undo checks that each file is still what setup wrote
before putting the backup back: an operator's later edits are not thrown away.
"""
import os
import stat
import uuid
from dataclasses import dataclass
from typing import Callable, List, Optional

from dfly.errors import LocalIOError

BACKUP = ".dfly-backup"
CREATED = ".dfly-created"


@dataclass(frozen=True)
class Change:
    path: str
    before: Optional[bytes]   # None: there is no file
    after: bytes


def read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise LocalIOError("cannot read %s: %s" % (path, e.strerror or e))


def apply(changes: List[Change]) -> None:
    """Every change, or (on an OSError) none: LocalIOError names the path that failed."""
    undo_steps: List[Callable[[], None]] = []
    try:
        for change in changes:
            _apply_one(change, undo_steps)
    except OSError as e:
        for step in reversed(undo_steps):
            _quietly(step)
        raise LocalIOError("cannot write %s: %s; nothing was changed"
                           % (e.filename or "a file", e.strerror or e))


def _apply_one(change: Change, undo_steps: List[Callable[[], None]]) -> None:
    folder = os.path.dirname(change.path)
    made = _make_folders(folder)
    undo_steps.append(lambda: _remove_folders(made))
    if change.before is None:
        marker = change.path + CREATED
        if not os.path.exists(marker):
            write_atomically(marker, "".join(d + "\n" for d in made).encode())
            undo_steps.append(lambda: os.remove(marker))
        undo_steps.append(lambda: os.remove(change.path))
    else:
        backup = change.path + BACKUP
        if not os.path.exists(backup):
            write_atomically(backup, change.before, like=change.path)
            undo_steps.append(lambda: os.remove(backup))
        undo_steps.append(lambda: write_atomically(change.path, change.before, like=change.path))
    write_atomically(change.path, change.after, like=change.path)


def _make_folders(folder: str) -> List[str]:
    """Create `folder` and missing parents; the ones created, deepest first."""
    made = []
    while not os.path.isdir(folder):
        made.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for path in reversed(made):
        os.mkdir(path, 0o755)
    return made


def _remove_folders(made: List[str]) -> None:
    for path in made:
        try:
            os.rmdir(path)
        except OSError:   # not empty: something else lives there now
            return


def write_atomically(path: str, data: bytes, like: Optional[str] = None) -> None:
    """`data` at `path` by a temporary name beside it and a rename; the mode and owner
    of `like` (the file being replaced) kept when it exists."""
    temp = os.path.join(os.path.dirname(path), ".%s.%s.tmp" % (os.path.basename(path), uuid.uuid4().hex[:8]))
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _copy_owner(like, temp)
        os.replace(temp, path)
    except BaseException:
        _quietly(lambda: os.remove(temp))
        raise


def _copy_owner(source: Optional[str], target: str) -> None:
    try:
        st = os.stat(source) if source else None
    except OSError:
        return
    if st is None:
        return
    os.chmod(target, stat.S_IMODE(st.st_mode))
    if os.geteuid() == 0:
        os.chown(target, st.st_uid, st.st_gid)


def _quietly(step: Callable[[], None]) -> None:
    try:
        step()
    except OSError:
        pass


@dataclass(frozen=True)
class Restore:
    path: str
    expected: Callable[[Optional[bytes]], bytes]   # what setup wrote, given the original


def plan_undo(targets: List[Restore]) -> List[str]:
    """Checks only: ValueError for a file changed since setup wrote it; the paths that
    setup changed (and so will be restored)."""
    restorable = []
    for target in targets:
        backup, marker = target.path + BACKUP, target.path + CREATED
        if os.path.exists(backup):
            original: Optional[bytes] = read(backup)
        elif os.path.exists(marker):
            original = None
        else:
            continue
        if read(target.path) != target.expected(original):
            raise ValueError("%s was changed after dfly setup wrote it: not restored (the "
                             "original is %s)" % (target.path, backup if original is not None
                                                  else "absent: remove the file by hand"))
        restorable.append(target.path)
    return restorable


def undo(paths: List[str]) -> List[str]:
    """Put back each path's backup (or remove the file setup created, and the folders made
    for it), last path first; a line saying what was done to each."""
    done = []
    try:
        for path in reversed(paths):
            if os.path.exists(path + BACKUP):
                os.replace(path + BACKUP, path)
                done.append("restored %s" % path)
                continue
            made = (read(path + CREATED) or b"").decode("utf-8", "replace").split()
            if os.path.exists(path):
                os.remove(path)
            os.remove(path + CREATED)
            _remove_folders(made)
            done.append("removed %s (dfly setup had created it)" % path)
    except OSError as e:
        raise LocalIOError("cannot restore %s: %s" % (e.filename or "a file", e.strerror or e))
    return done
