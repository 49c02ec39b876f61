"""An export archive's bytes on disk: one tar stream written to FILE, or cut into
parts FILE.000, FILE.001, ... of --part-size bytes each, and read back the same.

Writing keeps memory flat at any size: bytes go straight to disk, and a
member whose size or digest is known only at its end gets a placeholder
header that `patch` overwrites in place (parts are regular files, so that
works across a part boundary too). Every part is written under a temporary
name beside its target (as `get -o` writes: dfly/peer/output.py) and renamed
only when the whole archive is complete, so a failed export leaves nothing
at the target names; parts left there by an earlier, longer export of the
same name are removed then, so no stale part follows the new last one.
"""
import os
from typing import BinaryIO, List, Optional, Sequence

from dfly import errors
from dfly.peer import output
from dfly.protocol import ocilayout


class PartWriter:
    def __init__(self, path: str, part_size: int = 0):
        self.shown = path
        target, in_order = output.resolve(path)
        if in_order:
            raise errors.LocalIOError("%s is not a regular file: an archive is written to a file "
                                      "(its headers are completed in place)" % path)
        if not os.path.isdir(os.path.dirname(target) or "."):
            raise errors.LocalIOError("cannot write %s: its folder does not exist" % path)
        self.target = target
        self.part_size = part_size
        self.tag = os.urandom(4).hex()
        self.offset = 0
        self._files: List[BinaryIO] = []
        self._temps: List[str] = []

    @property
    def names(self) -> List[str]:
        """The final names of the parts written so far (one: the target itself, unsplit)."""
        if not self.part_size:
            return [self.target]
        return [ocilayout.part_name(self.target, n) for n in range(len(self._files))]

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            f, room = self._current()
            chunk = view[:room] if room is not None else view
            self._io(f.write, chunk)
            self.offset += len(chunk)
            view = view[len(chunk):]

    def patch(self, offset: int, data: bytes) -> None:
        """Overwrite bytes already written, at `offset` of the whole stream."""
        while data:
            number, within = divmod(offset, self.part_size) if self.part_size else (0, offset)
            room = self.part_size - within if self.part_size else len(data)
            f = self._files[number]
            here = f.tell()
            self._io(f.seek, within)
            self._io(f.write, data[:room])
            self._io(f.seek, here)
            offset, data = offset + min(room, len(data)), data[room:]

    def commit(self) -> List[str]:
        """Close every part and give each its name; the names."""
        for f in self._files:
            self._io(f.close)
        final = self.names
        for temp, name in zip(self._temps, final):
            self._io(os.replace, temp, name)
        self._temps = []
        if self.part_size:   # no stale part of an earlier export may follow the last one
            number = len(final)
            while os.path.exists(ocilayout.part_name(self.target, number)):
                _remove(ocilayout.part_name(self.target, number))
                number += 1
        return final

    def abort(self) -> None:
        for f in self._files:
            try:
                f.close()
            except OSError:
                pass
        for temp in self._temps:
            _remove(temp)
        self._temps = []

    def _current(self):
        """The part to write to and the room left in it (None: no limit)."""
        if not self._files or (self.part_size and self._files[-1].tell() >= self.part_size):
            name = self.target if not self.part_size else ocilayout.part_name(self.target, len(self._files))
            temp = output.temp_name(name, self.tag)
            self._temps.append(temp)
            self._files.append(self._io(open, temp, "w+b"))
        f = self._files[-1]
        return f, (self.part_size - f.tell()) if self.part_size else None

    def _io(self, call, *args):
        try:
            return call(*args)
        except OSError as e:
            raise errors.LocalIOError("cannot write %s: %s" % (self.shown, e.strerror or e))


class PartReader:
    """Reads an archive given as FILE, FILE.000 or FILE (when only its parts exist):
    the parts one after the other, until the next one is missing. Given several
    paths (every part, as a shell lists FILE.*), those, in that order."""

    def __init__(self, path: str, more: Sequence[str] = ()):
        self.shown = path
        base = ocilayout.first_part(path)
        if base is None and not os.path.exists(path) and os.path.exists(ocilayout.part_name(path, 0)):
            base = path
        self.base = base if not more else None
        self.listed = list(more)
        self.number = 0
        first = ocilayout.part_name(base, 0) if base and not more else path
        self._file: Optional[BinaryIO] = self._open(first)

    def read(self, size: int) -> bytes:
        """Up to `size` bytes; fewer only at the end of the last part."""
        parts = []
        while size > 0 and self._file is not None:
            block = self._io(self._file.read, size)
            if block:
                parts.append(block)
                size -= len(block)
                continue
            self._file.close()
            self._file = None
            if self.listed:
                self._file = self._open(self.listed.pop(0))
            elif self.base is not None:
                following = ocilayout.part_name(self.base, self.number + 1)
                if os.path.exists(following):
                    self.number += 1
                    self._file = self._open(following)
        return b"".join(parts)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self, name: str) -> BinaryIO:
        try:
            return open(name, "rb")
        except FileNotFoundError:
            raise errors.LocalIOError("cannot read %s: no such file (nor its part %s)"
                                      % (name, os.path.basename(ocilayout.part_name(name, 0))))
        except OSError as e:
            raise errors.LocalIOError("cannot read %s: %s" % (name, e.strerror or e))

    def _io(self, call, *args):
        try:
            return call(*args)
        except OSError as e:
            raise errors.LocalIOError("cannot read %s: %s" % (self.shown, e.strerror or e))


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
