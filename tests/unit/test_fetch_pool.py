"""The supernode's fetch pool picks the next job: each client host its share."""
from collections import deque

from dfly.supernode.fetchpool import next_job


def _noop():
    pass


def test_the_first_job_of_a_client_under_its_share_goes_next():
    queue = deque([("greedy", _noop), ("greedy", _noop), ("other", _noop)])
    assert next_job(queue, {}, 2) == 0
    assert next_job(queue, {"greedy": 2}, 2) == 2
    assert next_job(queue, {"greedy": 2, "other": 2}, 2) is None
    assert next_job(queue, {"greedy": 5}, 0) == 0   # 0: no share
