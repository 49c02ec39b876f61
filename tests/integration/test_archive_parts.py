"""An archive's bytes across parts (dfly/archive.py): written in order with
headers completed in place across a part boundary, renamed only at commit,
read back from FILE, FILE.000 or FILE when only its parts exist."""
import os

import pytest
from helpers import content

from dfly import errors
from dfly.archive import PartReader, PartWriter


def _read_all(reader: PartReader, step: int) -> bytes:
    out = []
    while True:
        block = reader.read(step)
        if not block:
            return b"".join(out)
        out.append(block)


@pytest.mark.parametrize("part_size", [0, 1, 7, 512, 1000, 4096])
def test_bytes_written_and_patched_across_parts_read_back_whole(tmp_path, part_size):
    data = bytearray(content(5000, seed=3))
    writer = PartWriter(str(tmp_path / "a.tar"), part_size)
    for at in range(0, len(data), 333):
        writer.write(bytes(data[at:at + 333]))
    patch = b"P" * 700
    writer.patch(990, patch)   # across parts of 1000 (and of 7, 512)
    data[990:1690] = patch
    assert not [n for n in os.listdir(str(tmp_path)) if not n.startswith(".")]   # nothing named yet
    names = writer.commit()
    assert names == ([str(tmp_path / "a.tar")] if not part_size else
                     [str(tmp_path / ("a.tar.%03d" % n)) for n in range(-(-5000 // part_size))])
    assert sorted(os.listdir(str(tmp_path))) == sorted(os.path.basename(n) for n in names)
    for start, more in ((names[0], ()), (str(tmp_path / "a.tar"), ()), (names[0], names[1:])):
        reader = PartReader(start, more)
        assert _read_all(reader, 600) == bytes(data)
        reader.close()


def test_an_aborted_archive_leaves_nothing_and_a_shorter_one_drops_stale_parts(tmp_path):
    writer = PartWriter(str(tmp_path / "a.tar"), 10)
    writer.write(b"x" * 55)
    writer.abort()
    assert os.listdir(str(tmp_path)) == []
    writer = PartWriter(str(tmp_path / "a.tar"), 10)
    writer.write(b"x" * 55)
    writer.commit()
    writer = PartWriter(str(tmp_path / "a.tar"), 10)
    writer.write(b"y" * 25)
    writer.commit()
    assert sorted(os.listdir(str(tmp_path))) == ["a.tar.000", "a.tar.001", "a.tar.002"]


def test_an_archive_that_is_not_there_or_not_writable_is_a_local_error(tmp_path):
    with pytest.raises(errors.LocalIOError, match="no such file"):
        PartReader(str(tmp_path / "missing.tar"))
    with pytest.raises(errors.LocalIOError, match="folder does not exist"):
        PartWriter(str(tmp_path / "no" / "a.tar"))
    with pytest.raises(errors.LocalIOError, match="directory"):
        PartWriter(str(tmp_path))


def test_parts_listed_are_read_in_the_order_given_and_no_others(tmp_path):
    writer = PartWriter(str(tmp_path / "a.tar"), 4)
    writer.write(b"0123456789")
    names = writer.commit()
    assert _read_all(PartReader(names[0], [names[2]]), 3) == b"012389"
