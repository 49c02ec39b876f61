"""A supernode that adopted a task (its owner died) fetches again, by Range, only
the pieces some peer still needs that no peer holds and it lacks itself, and
only when the origin's bytes match the digests the cluster recorded.

Driven through `cdn.Fetch` on a Task adopted from a replica, against the real
test origin; the peers are scheduler state (who holds what), which is all the
orphan rule reads."""
import hashlib
import threading

import pytest
from helpers import content, wait_until

from dfly.protocol.pieces import MIN_PIECE_SIZE
from dfly.supernode.cdn import Fetch
from dfly.supernode.scheduler import SchedulerConfig
from dfly.supernode.task import DONE, Task

PIECE = MIN_PIECE_SIZE
PIECES = 4


def _adopted(tmp_path, origin_file) -> Task:
    data = origin_file.data
    task = Task("t" * 64, origin_file.url, {}, None, str(tmp_path / "task"), SchedulerConfig())
    task.adopt({"length": len(data), "piece_size": PIECE, "etag": origin_file.etag,
                "last_modified": origin_file.last_modified,
                "digests": [hashlib.sha256(data[n * PIECE:(n + 1) * PIECE]).hexdigest()
                            for n in range(PIECES)]}, now=0.0)
    task.scheduler.peer_joined("a", ("10.0.0.1", 1), 0.0)
    task.scheduler.peer_joined("b", ("10.0.0.2", 2), 0.0)
    for num in (0, 1):   # a re-announced these; nobody holds 2 and 3
        task.scheduler.piece_done("a", num, 0.0)
    return task


def _run(task: Task, stop: threading.Event) -> Fetch:
    fetch = Fetch(task, timeout_s=10, bucket=None, orphan_grace_s=0.02, stop=stop)
    fetch.run()   # adopting a complete replica: marks the task done, starts the orphan filler
    return fetch


@pytest.mark.time_limit(20)
def test_only_pieces_no_peer_holds_are_fetched_again_by_range(tmp_path, origin):
    f = origin.add("blob", content(PIECES * PIECE, seed=3))
    task = _adopted(tmp_path, f)
    stop = threading.Event()
    try:
        _run(task, stop)
        wait_until(lambda: task.is_cached(2) and task.is_cached(3), 10, message="orphans refetched")
    finally:
        stop.set()

    assert task.state == DONE
    assert not task.is_cached(0) and not task.is_cached(1)   # a holds them: peers serve those
    served = origin.served("blob")
    assert [s.status for s in served] == [206, 206]
    assert sorted(s.headers.get("Range") for s in served) == [
        "bytes=%d-%d" % (n * PIECE, (n + 1) * PIECE - 1) for n in (2, 3)]
    assert task.source_bytes == 2 * PIECE
    with open(task.data_path, "rb") as cached:
        cached.seek(2 * PIECE)
        assert cached.read(2 * PIECE) == f.data[2 * PIECE:]


@pytest.mark.time_limit(20)
def test_an_origin_whose_bytes_changed_is_not_cached(tmp_path, origin):
    f = origin.add("blob", content(PIECES * PIECE, seed=3))
    task = _adopted(tmp_path, f)
    origin.add("blob", content(PIECES * PIECE, seed=4))   # same name, other bytes
    stop = threading.Event()
    try:
        _run(task, stop)
        wait_until(lambda: origin.requests("blob") >= 4, 10, message="orphans tried twice")
    finally:
        stop.set()

    assert not any(task.is_cached(n) for n in range(PIECES))
