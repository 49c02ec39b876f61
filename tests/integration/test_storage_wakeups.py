"""Whom a piece's progress wakes (dfly.peer.storage). Each wake-up is a thread
switch and a turn at the GIL on a download's CPU-bound path, so: a verified
block wakes only relays waiting for blocks of its piece (not readers of held
pieces, nor the running digest, nor the relays of the other pieces arriving:
a peer of the fan-out takes 16 pieces in at once and relays one of them to 15
peers); the running digest (`prefix_grown`) wakes only when the held
prefix grows, not for a piece that lands after a gap; readers waiting for the
file's length are told when it is known. A relay waits for the next block at
least its floor, and longer when the blocks have come slowly (relay_deadline).

Whether a waiter was woken is read off the condition (helpers.waiting_on) while
the test holds the storage's lock: a woken waiter cannot wait again before the
test lets the lock go, so nothing depends on timing."""
import threading

import pytest
from helpers import wait_until, waiting_on

from dfly.peer.storage import PieceFile

BLOCK = 256 << 10
PIECE = 4 * BLOCK


class Waiter:
    """A thread waiting on `cond` until ended."""

    def __init__(self, cond: threading.Condition):
        self.cond = cond
        self.stop = False
        self.thread = threading.Thread(target=self._run, name="test-waiter", daemon=True)
        self.thread.start()
        wait_until(lambda: waiting_on(cond) == 1)

    def _run(self) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.stop, timeout=30)

    def end(self) -> None:
        with self.cond:
            self.stop = True
            self.cond.notify_all()
        self.thread.join(10)
        assert not self.thread.is_alive()


def _storage(tmp_path, clock=None) -> PieceFile:
    storage = PieceFile(str(tmp_path / "file.part"), clock=clock or Clock())
    storage.set_geometry(3 * PIECE, PIECE)
    return storage


@pytest.mark.time_limit(20)
def test_blocks_verified_wake_no_reader_of_held_pieces(tmp_path):
    storage = _storage(tmp_path)
    reader = Waiter(storage.cond)
    with storage.cond:
        storage.piece_begun(0)
        for n in range(1, 5):
            storage.block_verified(0, n * BLOCK)
        storage.piece_begun(1)
        storage.piece_abandoned(1)
        assert waiting_on(storage.cond) == 1
        storage.mark_held(0)   # a piece held: that is what readers wait for
        assert waiting_on(storage.cond) == 0
    reader.end()
    storage.close()


@pytest.mark.time_limit(20)
def test_a_relay_waiting_for_blocks_is_woken_by_the_next_one(tmp_path):
    storage = _storage(tmp_path)
    relay, got = _relay_waiting_for(storage, 0)
    storage.block_verified(0, BLOCK)
    relay.join(10)
    assert got == [BLOCK]
    storage.close()


def _relay_waiting_for(storage: PieceFile, num: int):
    """A relay thread waiting for piece `num`'s first block (begun); and its result."""
    storage.piece_begun(num)
    got = []
    relay = threading.Thread(target=lambda: got.append(storage.verified_end(num, 0, 30)), daemon=True)
    relay.start()
    wait_until(lambda: _relays_waiting(storage, num) == 1)
    return relay, got


def _relays_waiting(storage: PieceFile, num: int) -> int:
    with storage.cond:
        cond = storage._relay_conds.get(num)
        return waiting_on(cond) if cond is not None else 0


@pytest.mark.time_limit(20)
def test_a_relay_is_woken_by_its_own_piece_only(tmp_path):
    storage = _storage(tmp_path)
    storage.piece_begun(1)
    relay, got = _relay_waiting_for(storage, 0)
    with storage.cond:
        for n in range(1, 5):
            storage.block_verified(1, n * BLOCK)   # another piece's blocks
        storage.mark_held(1)
        storage.piece_begun(2)
        storage.piece_abandoned(2)
        assert _relays_waiting(storage, 0) == 1
        storage.block_verified(0, BLOCK)
        assert _relays_waiting(storage, 0) == 0
    relay.join(10)
    assert got == [BLOCK]
    storage.close()


@pytest.mark.time_limit(20)
@pytest.mark.parametrize("change", ["abandoned", "held", "start_over", "forget"])
def test_a_relay_is_told_when_its_piece_stops_arriving(tmp_path, change):
    storage = _storage(tmp_path)
    relay, got = _relay_waiting_for(storage, 0)
    with storage.cond:
        if change == "abandoned":
            storage.piece_abandoned(0)
        elif change == "held":
            storage.mark_held(0)
        elif change == "start_over":
            storage.start_over("v2")
        else:
            storage.forget()
        assert _relays_waiting(storage, 0) == 0
    relay.join(10)
    assert got == [PIECE if change == "held" else 0]
    storage.close()


@pytest.mark.time_limit(20)
def test_the_running_digest_wakes_only_when_the_held_prefix_grows(tmp_path):
    storage = _storage(tmp_path)
    digest = Waiter(storage.prefix_grown)
    with storage.cond:
        storage.mark_held(1)   # after a gap: the prefix is still empty
        assert waiting_on(storage.prefix_grown) == 1
        storage.mark_held(0)   # now two pieces long
        assert waiting_on(storage.prefix_grown) == 0
    digest.end()
    storage.close()


@pytest.mark.time_limit(20)
def test_readers_waiting_for_the_length_are_told_when_it_is_known(tmp_path):
    storage = PieceFile(str(tmp_path / "file.part"))
    reader = Waiter(storage.cond)
    with storage.cond:
        storage.set_geometry(3 * PIECE, PIECE)
        assert waiting_on(storage.cond) == 0
    reader.end()
    storage.close()


class Clock:
    """A clock the test moves (the blocks' arrival times)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.time_limit(20)
def test_a_relay_waits_past_its_floor_for_blocks_that_have_come_slowly(tmp_path):
    clock = Clock()
    storage = _storage(tmp_path, clock)
    storage.piece_begun(0)
    clock.now += 0.5   # the first block took half a second: a slow link's pace
    storage.block_verified(0, BLOCK)
    clock.now += 0.6   # past the floor (0.2 s), within four blocks' time at that pace
    got = []
    relay = threading.Thread(target=lambda: got.append(storage.verified_end(0, BLOCK, 0.2)), daemon=True)
    relay.start()
    wait_until(lambda: _relays_waiting(storage, 0) == 1 or got, message="the relay waits")
    storage.block_verified(0, 2 * BLOCK)
    relay.join(10)
    assert got == [2 * BLOCK]
    storage.close()


@pytest.mark.time_limit(20)
def test_a_relay_whose_fast_source_stops_gives_up_after_its_floor(tmp_path):
    clock = Clock()
    storage = _storage(tmp_path, clock)
    storage.piece_begun(0)
    storage.block_verified(0, BLOCK)   # at once: a fast pace
    clock.now += 0.31
    assert storage.verified_end(0, BLOCK, 0.3) == BLOCK   # no more in time: the body ends short
    storage.close()
