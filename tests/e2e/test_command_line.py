"""The command line as a new user meets it (issue 16), driven through the built
zipapp: `-o` never breaks what is at the path, ordinary mistakes are one line."""
import os
import stat
import subprocess
import sys
import threading

import pytest
from helpers import MiB, content, leftovers

TIMEOUT_S = 60


def dfly(pyz, *args, env=None, timeout=TIMEOUT_S, **kwargs):
    """Run `python dfly.pyz ARGS` to the end; the CompletedProcess (text)."""
    return subprocess.run([sys.executable, pyz] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout, env=env, **kwargs)


def get(pyz, url, output, tmp_path, *more):
    """`dfly get` in its own process: no daemon, no supernode, nothing seeded."""
    return dfly(pyz, "get", url, "-o", output, "--no-daemon", "--seed-for", "0",
                "--data-dir", tmp_path / "data", *more)


def one_line_error(proc, code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dfly: error: "), proc.stderr
    return lines[0]


# -o: what is at the path -------------------------------------------------------------

def _char_device(path, minor: int) -> None:
    """A node like the host's /dev/null (minor 3) or /dev/full (7), made here, never /dev's."""
    try:
        os.mknod(str(path), stat.S_IFCHR | 0o666, os.makedev(1, minor))
        with open(str(path), "wb"):
            pass
    except OSError as e:   # not root, or a filesystem mounted nodev
        pytest.skip("cannot make and open a character device here: %s" % e)


def test_get_into_a_character_device_writes_to_it_and_leaves_it_a_device(pyz, origin, tmp_path):
    src = origin.add("f.bin", content(2 * MiB, seed=1))
    null = tmp_path / "null"
    _char_device(null, 3)
    proc = get(pyz, src.url, null, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISCHR(os.lstat(str(null)).st_mode), "-o replaced the device with a file"
    assert leftovers(str(tmp_path)) == []


def test_get_into_a_full_device_is_exit_6_and_leaves_it_a_device(pyz, origin, tmp_path):
    src = origin.add("f.bin", content(2 * MiB, seed=2))
    full = tmp_path / "full"
    _char_device(full, 7)
    line = one_line_error(get(pyz, src.url, full, tmp_path), 6)
    assert str(full) in line and "No space left" in line
    assert stat.S_ISCHR(os.lstat(str(full)).st_mode)
    assert leftovers(str(tmp_path)) == []


def test_get_into_a_fifo_writes_the_bytes_in_order_to_its_reader(pyz, origin, tmp_path):
    data = content(3 * MiB, seed=3)
    src = origin.add("f.bin", data)
    fifo = tmp_path / "pipe"
    os.mkfifo(str(fifo))
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), name="fifo-reader",
                              daemon=True)
    reader.start()
    proc = get(pyz, src.url, fifo, tmp_path)
    reader.join(TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    assert received == [data]
    assert stat.S_ISFIFO(os.lstat(str(fifo)).st_mode)


def test_get_through_a_symlink_replaces_the_file_it_points_to(pyz, origin, tmp_path):
    data = content(1 * MiB, seed=4)
    src = origin.add("f.bin", data)
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "f.bin"
    real.write_bytes(b"old")
    link = tmp_path / "link"
    link.symlink_to(real)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "real" / "new.bin")
    assert get(pyz, src.url, link, tmp_path).returncode == 0
    assert get(pyz, src.url, dangling, tmp_path).returncode == 0
    assert os.path.islink(str(link)) and os.path.islink(str(dangling))
    assert real.read_bytes() == data and (tmp_path / "real" / "new.bin").read_bytes() == data
    assert leftovers(str(tmp_path)) == [] and leftovers(str(tmp_path / "real")) == []


def test_get_into_a_directory_is_one_line_and_fetches_nothing(pyz, origin, tmp_path):
    src = origin.add("f.bin", content(1 * MiB, seed=5))
    folder = tmp_path / "folder"
    folder.mkdir()
    line = one_line_error(get(pyz, src.url, folder, tmp_path), 6)
    assert "is a directory" in line
    assert os.listdir(str(folder)) == [] and origin.requests("f.bin") == 0
