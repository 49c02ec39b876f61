"""Which URL a task is fetched from when registrants name it by several: the
newest untried one takes over a fetch that failed before cutting any piece."""
from dfly.supernode.scheduler import SchedulerConfig
from dfly.supernode.task import FAILED, MAX_SOURCES, PENDING, Task


def _task(url="http://a/dead") -> Task:
    return Task("t" * 64, url, {"Authorization": "first"}, "sha256:" + "0" * 64, "/nonexistent",
                SchedulerConfig())


def test_the_same_url_brings_fresher_credentials_not_another_source():
    task = _task()
    task.source_offered("http://a/dead", {"Authorization": "newer"})
    assert task.headers == {"Authorization": "newer"} and task.sources == {}


def test_a_fetch_failing_before_any_piece_goes_on_to_the_newest_other_url():
    task = _task()
    task.source_offered("http://b/ok", {"Authorization": "b"})
    task.source_offered("http://c/ok", {"Authorization": "c"})
    with task.cond:   # as the fetch thread calls it
        task.fail("SourceError", "404", now=1.0)
        assert (task.state, task.url, task.headers) == (PENDING, "http://c/ok", {"Authorization": "c"})
        task.fail("SourceError", "404", now=2.0)
        assert (task.state, task.url) == (PENDING, "http://b/ok")
        task.fail("DigestMismatch", "wrong bytes", now=3.0)
    assert task.state == FAILED and task.error == "wrong bytes"   # every URL tried


def test_a_fetch_that_cut_pieces_or_hit_our_own_disk_fails_as_before():
    task = _task()
    task.source_offered("http://b/ok", {})
    task.digests = ["ab" * 32]   # a peer may hold this piece: no restart under it
    with task.cond:
        task.fail("SourceError", "cut short", now=1.0)
    assert task.state == FAILED and task.url == "http://a/dead"
    other = _task()
    other.source_offered("http://b/ok", {})
    with other.cond:
        other.fail("LocalIOError", "disk full", now=1.0)
    assert other.state == FAILED


def test_the_sources_kept_are_bounded():
    task = _task()
    for i in range(MAX_SOURCES + 5):
        task.source_offered("http://x/%d" % i, {})
    assert len(task.sources) == MAX_SOURCES and "http://x/%d" % (MAX_SOURCES + 4) in task.sources
