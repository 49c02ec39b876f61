"""A schedule reply that never reached its peer (its call timed out, behind links
full of the swarm's pieces): the peer asks again while pieces still arrive
(downloader.ask_again), numbering its calls; the supernode releases what the
replies it never heard assigned (TaskScheduler.replies_heard), so those pieces do
not wait assignment_timeout_s (60 s) for nobody."""
import pytest

from dfly.errors import BadRequest
from dfly.peer.downloader import ANSWER_PATIENCE_S, ask_again
from dfly.protocol.messages import ScheduleRequest
from dfly.supernode.scheduler import REPLIES_KEPT, SUPERNODE, SchedulerConfig, TaskScheduler

T0 = 1000.0


def test_a_timed_out_call_is_made_again_while_piece_bytes_arrive():
    assert ask_again(now=T0 + 17, last_answer=T0 - 1, arrived=True)


def test_it_is_not_when_nothing_arrived_while_it_was_out():
    # A dead or unreachable supernode on idle links: given up at once, as before.
    assert not ask_again(now=T0 + 17, last_answer=T0 - 1, arrived=False)


def test_nor_once_the_supernode_has_not_answered_for_the_patience():
    # A hung supernode while peers still deliver: given up after the patience.
    now = T0 + ANSWER_PATIENCE_S
    assert not ask_again(now, last_answer=T0, arrived=True)
    assert ask_again(now - 0.1, last_answer=T0, arrived=True)


def _scheduler(pieces=8):
    s = TaskScheduler(SchedulerConfig(cut_through=False))
    for num in range(pieces):
        s.piece_available(num)
    s.peer_joined("a", ("10.0.0.1", 9000), T0)
    return s


def _call(s, call, heard, want, now):
    """One numbered call of peer a: its reply's assignments."""
    s.replies_heard("a", call, heard)
    out = s.assign("a", want, now)
    s.reply_made("a", call, out, now)
    return out


def test_what_an_unheard_reply_assigned_is_released_at_the_next_call():
    s = _scheduler()
    first = _call(s, call=1, heard=0, want=2, now=T0)       # heard
    _call(s, call=2, heard=1, want=2, now=T0 + 1)           # its reply lost
    assert s.upload_load(SUPERNODE) == 4
    again = _call(s, call=3, heard=1, want=2, now=T0 + 18)  # made again: call 2 unheard
    held = set(s.peers["a"].inflight)
    assert {a.piece for a in first} | {a.piece for a in again} == held   # not `lost` beside them
    assert len(held) == 4 and s.upload_load(SUPERNODE) == 4   # the lost reply's slots came back


def test_a_heard_reply_keeps_its_assignments():
    s = _scheduler()
    first = _call(s, call=1, heard=0, want=2, now=T0)
    _call(s, call=2, heard=1, want=0, now=T0 + 1)
    assert set(s.peers["a"].inflight) == {a.piece for a in first}
    assert s.peers["a"].replies == {}


def test_a_late_attempt_s_reply_is_released_by_the_call_after_the_one_that_replaced_it():
    # The attempt that timed out (call 2) is still being answered when its
    # replacement (call 3) arrives and is heard; call 4 releases what 2 assigned.
    s = _scheduler()
    _call(s, call=1, heard=0, want=1, now=T0)
    replacement = _call(s, call=3, heard=1, want=1, now=T0 + 18)
    late = _call(s, call=2, heard=1, want=1, now=T0 + 19)
    assert late and not {a.piece for a in late} & {a.piece for a in replacement}
    _call(s, call=4, heard=3, want=0, now=T0 + 20)
    assert not {a.piece for a in late} & set(s.peers["a"].inflight)
    assert {a.piece for a in replacement} <= set(s.peers["a"].inflight)


def test_a_piece_assigned_again_since_is_not_released_for_the_old_reply():
    s = _scheduler()
    lost = _call(s, call=1, heard=0, want=1, now=T0)
    num = lost[0].piece
    s.peer_seen("a", T0 + 61)
    s.expire(T0 + 61)   # released by assignment_timeout_s meanwhile ...
    assert num not in s.peers["a"].inflight
    assert num in {a.piece for a in s.assign("a", 8, T0 + 62)}   # ... and assigned anew, outside it
    s.replies_heard("a", call=2, heard=0)
    assert num in s.peers["a"].inflight


def test_a_peer_numbering_its_calls_backwards_keeps_few_replies_on_record():
    s = _scheduler(pieces=200)
    for call in range(1000, 900, -1):   # each reply is heard, its piece fetched and reported
        out = s.assign("a", 1, T0)
        assert out
        s.reply_made("a", call, out, T0)
        s.piece_done("a", out[0].piece, T0)
    assert len(s.peers["a"].replies) == REPLIES_KEPT


def test_unnumbered_calls_release_nothing():
    s = _scheduler()
    lost = _call(s, call=1, heard=0, want=2, now=T0)
    assert s.replies_heard("a", call=0, heard=0) == set()   # the reporter's, an older peer's
    assert {a.piece for a in lost} == set(s.peers["a"].inflight)


def test_call_numbers_travel_and_bad_ones_are_refused():
    request = ScheduleRequest("p1", call=7, heard=5)
    parsed = ScheduleRequest.parse(request.to_json())
    assert (parsed.call, parsed.heard) == (7, 5)
    assert "call" not in ScheduleRequest("p1").to_json()   # older supernodes see the request they knew
    for bad in (-1, "3", True, 1.5, 1 << 63):
        with pytest.raises(BadRequest):
            ScheduleRequest.parse({"peer_id": "p1", "call": bad})
        with pytest.raises(BadRequest):
            ScheduleRequest.parse({"peer_id": "p1", "call": 1, "heard": bad})


def test_a_call_that_has_not_heard_the_last_answered_one_repeats_it():
    """Made again after a lost reply, a call carries the same reports: its failures
    were counted when the lost one came (twice, a holder was blamed twice)."""
    s = _scheduler()
    assert not s.repeats_answered("a", call=1, heard=0)   # nothing answered yet
    _call(s, call=1, heard=0, want=0, now=T0)             # answered (nothing assigned)
    assert not s.repeats_answered("a", call=2, heard=1)   # heard it: new reports
    assert s.repeats_answered("a", call=2, heard=0)       # did not: call 1 again
    _call(s, call=2, heard=0, want=0, now=T0 + 17)
    assert s.repeats_answered("a", call=3, heard=0)       # lost twice: still call 1's reports
    assert s.repeats_answered("a", call=2, heard=0)       # call 2 itself, come twice
    assert not s.repeats_answered("a", call=1, heard=0)   # a count begun anew: not a repeat
    assert not s.repeats_answered("a", call=0, heard=0)   # unnumbered (the reporter)
    assert not s.repeats_answered("nobody", call=5, heard=0)


def test_a_reporter_call_made_again_keeps_its_number_and_repeats_its_reports():
    """The reporter's calls (want 0, beside the coordinator's long-poll) have a count
    of their own; one made again after a lost reply keeps its number."""
    s = _scheduler()
    assert not s.report_call_came("a", 1)       # the first
    assert s.report_call_came("a", 1)           # come again: its failures were counted
    assert s.report_call_came("a", 1)           # and again
    assert not s.report_call_came("a", 2)       # the next
    assert not s.report_call_came("a", 1)       # below the last: a count begun anew
    assert not s.report_call_came("a", 0)       # not numbered (older peers, a seeder's)
    assert not s.report_call_came("a", 0)
    assert not s.report_call_came("nobody", 3)
    assert not s.repeats_answered("a", call=1, heard=0)   # the coordinator's count is apart


def test_report_numbers_travel_and_bad_ones_are_refused():
    parsed = ScheduleRequest.parse(ScheduleRequest("p1", want=0, report_call=9).to_json())
    assert parsed.report_call == 9 and parsed.call == 0
    assert "report_call" not in ScheduleRequest("p1").to_json()   # older supernodes: as before
    for bad in (-1, "3", True, 1.5, 1 << 63):
        with pytest.raises(BadRequest):
            ScheduleRequest.parse({"peer_id": "p1", "report_call": bad})
