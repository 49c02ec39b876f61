"""The proxy's per-task memory of the origin's HEAD: one flight per URL, waiters
share its answer, a good answer is kept for fresh_for_s and then revalidated."""
import threading

import pytest
from helpers import run_all, wait_until

from dfly.peer.descriptions import Description, Descriptions

GOOD = Description([("Content-Type", "text/csv")], [("ETag", '"v1"'), ("Last-Modified", "x")], keep=True)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_concurrent_askers_share_one_flight():
    descriptions = Descriptions(0.0, Clock(), wait_s=30.0)   # nothing kept: only the flight is shared
    release = threading.Event()
    asked = []

    def ask(previous):
        asked.append(previous)
        release.wait(30)
        return GOOD

    waiters = [lambda: descriptions.get("http://o/f", ask)] * 8

    def release_when_all_wait():
        try:
            wait_until(lambda: descriptions.waiting("http://o/f") == 7, timeout=20)
        finally:
            release.set()

    thread = threading.Thread(target=release_when_all_wait, name="test-release", daemon=True)
    thread.start()
    outcomes = run_all(waiters, timeout=30)
    thread.join(10)
    assert [result for result, _ in outcomes] == [GOOD] * 8
    assert asked == [None] and descriptions.asked == 1


def test_a_kept_answer_is_revalidated_once_it_expires():
    clock = Clock()
    descriptions = Descriptions(60.0, clock, wait_s=30.0)
    previous_seen = []

    def ask(previous):
        previous_seen.append(previous)
        return previous or GOOD

    assert descriptions.get("u", ask) is GOOD
    clock.now += 59
    assert descriptions.get("u", ask) is GOOD
    clock.now += 2
    assert descriptions.get("u", ask) is GOOD
    assert previous_seen == [None, GOOD]
    assert GOOD.conditions() == [("If-None-Match", '"v1"'), ("If-Modified-Since", "x")]


def test_failures_and_unkept_answers_are_not_reused():
    descriptions = Descriptions(60.0, Clock(), wait_s=30.0)
    calls = []

    def refuse(previous):
        calls.append("refuse")
        raise PermissionError("403")

    with pytest.raises(PermissionError):
        descriptions.get("u", refuse)
    unknown = Description([("Content-Type", "application/octet-stream")])
    assert descriptions.get("u", lambda previous: unknown) is unknown
    assert descriptions.get("u", lambda previous: GOOD) is GOOD
    assert descriptions.asked == 3


def test_a_waiter_asks_itself_when_the_flight_is_stuck():
    descriptions = Descriptions(60.0, Clock(), wait_s=0.2)
    stuck, release = threading.Event(), threading.Event()

    def hang(previous):
        stuck.set()
        release.wait(30)
        return GOOD

    leader = threading.Thread(target=descriptions.get, args=("u", hang), name="test-leader", daemon=True)
    leader.start()
    assert stuck.wait(10)
    other = Description([("Content-Type", "text/plain")])
    assert descriptions.get("u", lambda previous: other) is other
    release.set()
    leader.join(10)
    assert descriptions.get("u", lambda previous: other) is GOOD
