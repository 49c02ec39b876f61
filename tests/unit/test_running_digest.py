"""The whole-file digest hashed while pieces arrive (dfly.peer.verify)."""
import hashlib

import pytest

from dfly import errors
from dfly.peer.storage import PieceFile
from dfly.peer.verify import RunningDigest, check_file
from tests.helpers import wait_until

PIECE = 1024
DATA = bytes(range(256)) * 15   # 3840 bytes: three full pieces and a short one


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _storage(tmp_path) -> PieceFile:
    storage = PieceFile(str(tmp_path / "file.part"))
    storage.set_geometry(len(DATA), PIECE)
    return storage


def _put(storage: PieceFile, num: int, data: bytes = DATA) -> None:
    storage.write(num * PIECE, data[num * PIECE:(num + 1) * PIECE])
    storage.mark_held(num)


@pytest.mark.time_limit(10)
def test_the_verified_prefix_is_hashed_while_pieces_arrive(tmp_path):
    storage = _storage(tmp_path)
    running = RunningDigest(storage, _digest(DATA)).start()
    try:
        _put(storage, 1)           # not a prefix yet: nothing to hash
        _put(storage, 0)           # now pieces 0 and 1 are
        wait_until(lambda: running.hashed == 2 * PIECE)
        _put(storage, 3)
        _put(storage, 2)
        running.finish()
        assert running.hashed == len(DATA)
    finally:
        running.stop()
        storage.close()


@pytest.mark.time_limit(10)
def test_a_file_that_is_not_the_digest_is_refused(tmp_path):
    storage = _storage(tmp_path)
    running = RunningDigest(storage, _digest(DATA[:-1] + b"x")).start()
    try:
        for num in range(4):
            _put(storage, num)
        with pytest.raises(errors.DigestMismatch):
            running.finish()
    finally:
        running.stop()
        storage.close()


@pytest.mark.time_limit(10)
def test_finish_hashes_whatever_the_thread_had_not_reached(tmp_path):
    storage = _storage(tmp_path)
    running = RunningDigest(storage, _digest(DATA)).start()
    running.stop()   # before any piece: the thread hashed nothing
    for num in range(4):
        _put(storage, num)
    running.finish()
    storage.close()


def test_check_file_reads_the_whole_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(DATA)
    check_file(str(path), _digest(DATA))
    with pytest.raises(errors.DigestMismatch):
        check_file(str(path), _digest(b"other"))
