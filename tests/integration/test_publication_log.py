"""The publish log on its own, files under tmp_path and a hand-driven clock:
retention by age, the bounded subscriptions table, seqs never reused."""
from dfly.protocol import publications as rules
from dfly.protocol.publications import Retention
from dfly.supernode.publications import PublicationLog


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _poll(subscriber: str, after: int = 0):
    return rules.parse_poll({"subscriber": [subscriber], "after": [str(after)], "topics": ["*"]})


def test_publications_older_than_the_window_leave_and_their_seqs_are_not_reused(tmp_path):
    clock = Clock()
    log = PublicationLog(str(tmp_path), Retention(keep_s=60.0, keep_count=100), wall_clock=clock)
    log.publish("file", "http://o/a", ("o/a",), (), ())
    clock.now += 61
    log.publish("file", "http://o/b", ("o/b",), (), ())
    assert [p.seq for p in log.after(0)] == [2]
    clock.now += 61
    reply = log.poll(_poll("s1"), "127.0.0.1", deadline=0.0)
    assert (reply["head"], reply["first"], reply["publications"], reply["missed"]) == (2, 3, [], True)
    assert reply["next"] == 2   # past what left: the next poll is not told again
    assert log.poll(_poll("s1", after=2), "127.0.0.1", deadline=0.0)["missed"] is False
    again = PublicationLog(str(tmp_path), Retention(keep_s=60.0, keep_count=100), wall_clock=clock)
    assert again.publish("file", "http://o/c", ("o/c",), (), ()).seq == 3
    assert again.log_id == log.log_id


def test_the_subscriptions_table_keeps_the_latest_pollers_when_full(tmp_path):
    clock = Clock()
    log = PublicationLog(str(tmp_path), wall_clock=clock, max_subscribers=2)
    for name in ("a", "b", "c"):
        clock.now += 1
        log.poll(_poll(name), "127.0.0.1", deadline=0.0)
    assert [r["subscriber"] for r in log.subscriptions()["subscriptions"]] == ["b", "c"]
