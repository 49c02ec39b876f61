"""Content versions on the wire and in a task: what counts as stale, how the
field is parsed, and which reported pieces a task believes (no I/O)."""
import pytest

from dfly.errors import BadRequest
from dfly.protocol.messages import ScheduleRequest, TaskState, stale
from dfly.supernode.cdn import content_version_for
from dfly.supernode.scheduler import SchedulerConfig
from dfly.supernode.task import Task

T0 = 1000.0


def test_only_two_known_versions_that_differ_are_stale():
    assert stale("a1", "b2")
    assert not stale("a1", "a1")
    assert not stale("", "b2") and not stale(None, "b2") and not stale("a1", "")


def test_a_report_carries_its_version_and_an_older_peer_may_leave_it_out():
    request = ScheduleRequest("p1", done=[0], content_version="abc")
    assert ScheduleRequest.parse(request.to_json()).content_version == "abc"
    assert "content_version" not in ScheduleRequest("p1").to_json()
    assert ScheduleRequest.parse({"peer_id": "p1"}).content_version is None
    with pytest.raises(BadRequest):
        ScheduleRequest.parse({"peer_id": "p1", "content_version": "x" * 65})


def test_pieces_in_a_reply_are_of_the_reply_version_and_an_older_supernode_says_none():
    piece = {"num": 0, "start": 0, "size": 1, "sha256": "00", "holder": "supernode"}
    state = TaskState.parse({"state": "running", "content_version": "v2", "pieces": [piece]})
    assert state.content_version == "v2" and state.pieces[0].content_version == "v2"
    assert TaskState.parse({"state": "running", "content_version": 7}).content_version == ""
    assert TaskState.parse({"state": "done"}).content_version == ""


def test_the_same_strong_etag_and_length_name_the_same_content_and_a_weak_one_never_does():
    assert content_version_for('"e1"', 10, 1) == content_version_for('"e1"', 10, 1)
    assert content_version_for('"e1"', 10, 1) != content_version_for('"e2"', 10, 1)
    assert content_version_for('"e1"', 10, 1) != content_version_for('"e1"', 11, 1)
    assert content_version_for('W/"e1"', 10, 1) != content_version_for('W/"e1"', 10, 1)
    assert content_version_for("", None, 1) != content_version_for("", None, 1)


def task_with(peers, version="v1") -> Task:
    task = Task("0" * 64, "http://origin/f", {}, None, "/nonexistent", SchedulerConfig())
    task.clock = lambda: T0
    task.content_version = version
    for i, peer_id in enumerate(peers):
        task.scheduler.peer_joined(peer_id, ("10.0.0.%d" % (i + 1), 9000), T0)
    return task


def test_a_piece_reported_before_it_is_cut_is_believed_when_cut_as_the_same_version():
    task = task_with(["seeder", "other"])
    task.report_early("seeder", 0, "v1")
    task.report_early("other", 0, "v0")
    task.piece_written("d0")
    assert task.scheduler.holders_of(0) == {"seeder"}


def test_a_new_version_forgets_what_peers_hold_and_the_same_one_cut_again_keeps_it():
    task = task_with(["a"])
    task.piece_written("d0")
    task.scheduler.piece_done("a", 0, T0)
    with task.cond:
        task.new_version("v1")   # the same bytes read again from byte 0
    assert task.scheduler.holders_of(0) == set() and "a" in task.scheduler.peers
    task.piece_written("d0")
    assert task.scheduler.holders_of(0) == {"a"}

    with task.cond:
        task.new_version("v2")   # other bytes
    task.piece_written("e0")
    assert task.scheduler.holders_of(0) == set() and "a" in task.scheduler.peers


def test_early_reports_are_bounded_by_the_piece_count_once_known():
    task = task_with(["a"])
    task.length, task.piece_size = 2, 1
    task.report_early("a", 5, "v1")
    task.report_early("a", 1, "v1")
    assert sorted(task._early) == [1]


def test_a_cut_keeping_an_earlier_copys_version_keeps_it_while_its_pieces_match_that_copy():
    task = task_with(["a"])
    task.report_early("a", 0, "v1")
    task.report_early("a", 1, "v1")
    with task.cond:
        task.new_version("v1", ["d0", "d1", "d2"])   # no strong ETag: only the digests can tell
        assert not task.piece_cut("d0")
        task.piece_written("d0")
        assert not task.piece_cut("d1")
        task.piece_written("d1")
    assert task.content_version == "v1" and task.scheduler.holders_of(1) == {"a"}

    with task.cond:
        assert task.piece_cut("x2")   # other bytes from piece 2 on
    assert task.content_version not in ("v1", "") and task.confirming is None
    assert task.digests == ["d0", "d1"] and task.scheduler.holders_of(0) == set()
    assert task.is_cached(0) and task.is_cached(1)


def test_a_kept_version_doubts_a_held_piece_past_the_earlier_copys_digests():
    task = task_with(["a"])
    with task.cond:
        task.new_version("v1", ["d0"])
        task.piece_written("d0")
        task.report_early("a", 1, "v1")   # held, but its digest was never known here
        assert task.piece_cut("d1")
    assert task.content_version != "v1"

    task = task_with(["a"])
    with task.cond:
        task.new_version("v1", ["d0"])
        for sha in ("d0", "d1"):
            assert not task.piece_cut(sha)
            task.piece_written(sha)
    assert task.vouches_for(0, assigned=False) and task.vouches_for(1, assigned=True)
    assert not task.vouches_for(1, assigned=False)
    with task.cond:
        task.new_version("v2")
    assert task.vouches_for(1, assigned=False)   # a version of its own: nothing to doubt


def test_only_a_cut_no_strong_etag_names_of_the_same_length_and_piece_size_is_matched_by_digests():
    from dfly.supernode.cdn import _digests_to_match
    meta = {"content_version": "v1", "length": 10, "piece_size": 4, "digests": ["a", "b"]}
    assert _digests_to_match(meta, "", 10, 4) == ["a", "b"]
    assert _digests_to_match(meta, 'W/"e"', 10, 4) == ["a", "b"]   # a weak ETag names no bytes
    assert _digests_to_match(meta, '"e"', 10, 4) == []   # a strong one does: its own version
    assert _digests_to_match(meta, "", 11, 4) == [] and _digests_to_match(meta, "", None, 4) == []
    assert _digests_to_match(meta, "", 10, 8) == [] and _digests_to_match(None, "", 10, 4) == []
    assert _digests_to_match(dict(meta, content_version=""), "", 10, 4) == []
    # A crash mid-cut: the copy before it is still what the next cut is matched against.
    assert _digests_to_match(dict(meta, confirming=["a", "b", "c"]), "", 10, 4) == ["a", "b", "c"]
    assert _digests_to_match(dict(meta, confirming="junk"), "", 10, 4) == ["a", "b"]


def test_a_new_version_keeps_the_count_of_each_peers_calls():
    """A call made again after a lost reply is told from a new one by that count
    (repeats_answered); a cut begun between the two must not make its failures
    count twice."""
    task = task_with(["a"])
    task.scheduler.reply_made("a", 1, [], T0)
    assert not task.scheduler.report_call_came("a", 4)   # the reporter's fourth call came
    with task.cond:
        task.new_version("v2")
    assert task.scheduler.repeats_answered("a", call=2, heard=0)
    assert task.scheduler.report_call_came("a", 4)       # and comes again
