"""A get SIGKILLed mid-download cannot remove its temporary `.dfly-part` (nothing
runs after SIGKILL): the next get of the same target removes it, and never the
part of a get still writing the same target (each part is locked by its writer,
and the lock dies with it). The built zipapp, as a user meets it."""
import subprocess
import sys

import pytest
from helpers import MiB, content, leftovers, sha256_file, wait_until

TIMEOUT_S = 60


def _get(pyz, url, target, data_dir):
    return subprocess.Popen([sys.executable, pyz, "get", url, "-o", str(target), "--no-daemon",
                             "--data-dir", str(data_dir), "--seed-for", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(data_dir))


def _stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=TIMEOUT_S)


@pytest.mark.time_limit(90)
def test_a_part_left_by_a_killed_get_is_removed_by_the_next_get_of_that_file(pyz, origin, tmp_path):
    stalled = origin.add("stalled.bin", content(4 * MiB, seed=61))
    origin.fault("stalled.bin", stall_after=MiB + 5)   # sends a little, then nothing until stopped
    fine = origin.add("fine.bin", content(2 * MiB + 7, seed=62))
    out = tmp_path / "out"
    out.mkdir()
    target = out / "f.bin"
    killed = _get(pyz, stalled.url, target, tmp_path)
    writing = None
    try:
        wait_until(lambda: len(leftovers(str(out))) == 1, timeout=30, message="the first get's part")
        killed.kill()
        killed.wait(timeout=TIMEOUT_S)
        (dead_part,) = leftovers(str(out))
        writing = _get(pyz, stalled.url, target, tmp_path)   # removes the dead part, stays alive
        wait_until(lambda: leftovers(str(out)) not in ([], [dead_part]), timeout=30,
                   message="the dead part replaced by the second get's")
        (live_part,) = leftovers(str(out))

        done = subprocess.run([sys.executable, pyz, "get", fine.url, "-o", str(target), "--no-daemon",
                               "--data-dir", str(tmp_path), "--seed-for", "0"],
                              capture_output=True, text=True, timeout=TIMEOUT_S, cwd=str(tmp_path))
        assert done.returncode == 0, done.stderr
        assert sha256_file(str(target)) == fine.sha256
        assert leftovers(str(out)) == [live_part]   # a part being written is not stale
        assert writing.poll() is None
    finally:
        _stop(killed)
        if writing is not None:
            _stop(writing)


def _stream_parts(data_dir):
    folder = data_dir / "peer" / "tmp"
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part")) if folder.is_dir() else []


@pytest.mark.time_limit(90)
def test_a_stream_left_by_a_killed_get_to_stdout_is_removed_by_the_next_one(pyz, origin, tmp_path):
    """`-o -` writes its pieces to a temporary file in the data dir first."""
    stalled = origin.add("stalled.bin", content(4 * MiB, seed=63))
    origin.fault("stalled.bin", stall_after=MiB + 5)
    fine = origin.add("fine.bin", content(MiB + 9, seed=64))
    data = tmp_path / "data"
    data.mkdir()
    killed = _get(pyz, stalled.url, "-", data)
    writing = None
    try:
        wait_until(lambda: len(_stream_parts(data)) == 1 and origin.arrived("stalled.bin") == 1,
                   timeout=30, message="the first stream's file")
        killed.kill()
        killed.wait(timeout=TIMEOUT_S)
        (dead,) = _stream_parts(data)
        writing = _get(pyz, stalled.url, "-", data)   # removes the dead file, stays alive
        wait_until(lambda: _stream_parts(data) not in ([], [dead]), timeout=30,
                   message="the dead file replaced by the second stream's")
        (live,) = _stream_parts(data)
        done = subprocess.run([sys.executable, pyz, "get", fine.url, "-o", "-", "--no-daemon",
                               "--data-dir", str(data), "--seed-for", "0"],
                              capture_output=True, timeout=TIMEOUT_S, cwd=str(data))
        assert done.returncode == 0, done.stderr
        assert done.stdout == fine.data
        assert _stream_parts(data) == [live]   # a stream being written is not stale
        assert writing.poll() is None
    finally:
        _stop(killed)
        if writing is not None:
            _stop(writing)
