"""The cold path (origin -> supernode -> peer): what the supernode's fetch does per
piece stays cheap, since serving pieces and schedule calls wait on the task's lock."""
import json

from helpers import MiB, content

from dfly.supernode.cdn import Fetch
from dfly.supernode.scheduler import SchedulerConfig
from dfly.supernode.task import DONE, Task


def test_meta_json_is_not_rewritten_for_every_piece_under_the_task_lock(origin, tmp_path):
    """Each rewrite (create, rename) holds the task's lock, which serving pieces and
    schedule calls wait on: while the clock stands still, the first piece writes it,
    the next ones do not, and the end of the source writes it whole."""
    src = origin.add("meta.bin", content(5 * MiB, seed=72))
    task = Task("8" * 64, src.url, {}, None, str(tmp_path / "task"), SchedulerConfig())
    on_disk = {}

    def digests_on_disk(task, num, sha256_hex):   # just before piece `num` is offered
        with open(task.meta_path) as f:
            on_disk[num] = len(json.load(f)["digests"])

    Fetch(task, 10.0, None, before_offer=digests_on_disk, clock=lambda: 100.0).run()
    assert task.state == DONE and len(task.digests) == 5
    assert on_disk == {0: 0, 1: 1, 2: 1, 3: 1, 4: 1}
    with open(task.meta_path) as f:
        meta = json.load(f)
    assert meta["complete"] and meta["digests"] == task.digests
