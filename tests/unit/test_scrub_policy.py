"""Scrubbing rules: what to check next, how fast, and what a damaged meta means."""
from dfly.protocol.ratelimit import TokenBucket
from dfly.protocol.scrub import SCRUB_AGAIN_AFTER_S, SCRUB_STEP_BYTES, ScrubCandidate, next_to_scrub
from dfly.supernode.scheduler import SUPERNODE, TaskScheduler
from dfly.supernode.task import normalise_damaged

DAY = SCRUB_AGAIN_AFTER_S


def test_a_file_left_mid_write_goes_before_everything_else():
    candidates = [ScrubCandidate("never"), ScrubCandidate("old", checked_at=0.0),
                  ScrubCandidate("torn", unclean=True)]
    assert next_to_scrub(candidates, now=10 * DAY) == "torn"


def test_files_never_checked_go_before_ones_checked_long_ago():
    candidates = [ScrubCandidate("old", checked_at=0.0), ScrubCandidate("b"), ScrubCandidate("a")]
    assert next_to_scrub(candidates, now=10 * DAY) == "a"


def test_a_never_checked_file_goes_before_a_due_one_whatever_their_names():
    candidates = [ScrubCandidate("a-old", checked_at=0.0), ScrubCandidate("z-never")]
    assert next_to_scrub(candidates, now=10 * DAY) == "z-never"


def test_among_equals_the_first_name_goes_first():
    torn = [ScrubCandidate("b", unclean=True), ScrubCandidate("a", unclean=True, checked_at=5.0)]
    assert next_to_scrub(torn, now=10 * DAY) == "a"
    due = [ScrubCandidate("d", checked_at=3.0), ScrubCandidate("c", checked_at=3.0)]
    assert next_to_scrub(due, now=10 * DAY) == "c"


def test_an_unclean_file_goes_first_even_when_it_was_checked_just_now():
    candidates = [ScrubCandidate("never"), ScrubCandidate("torn", unclean=True, checked_at=100.0)]
    assert next_to_scrub(candidates, now=100.0) == "torn"


def test_the_wait_before_a_check_again_can_be_given():
    candidates = [ScrubCandidate("x", checked_at=100.0)]
    assert next_to_scrub(candidates, now=160.0, again_after_s=60.0) == "x"
    assert next_to_scrub(candidates, now=159.0, again_after_s=60.0) is None


def test_the_file_checked_longest_ago_goes_first_once_it_is_due():
    candidates = [ScrubCandidate("x", checked_at=5.0), ScrubCandidate("y", checked_at=1.0)]
    assert next_to_scrub(candidates, now=DAY + 10) == "y"
    assert next_to_scrub(candidates, now=DAY + 3) == "y"   # x is not due yet


def test_nothing_is_checked_again_before_it_is_due():
    candidates = [ScrubCandidate("x", checked_at=100.0)]
    assert next_to_scrub(candidates, now=100.0 + DAY - 1) is None
    assert next_to_scrub(candidates, now=100.0 + DAY) == "x"
    assert next_to_scrub([], now=0.0) is None


def test_the_scrub_reads_at_its_rate_from_the_start():
    rate = 10 * SCRUB_STEP_BYTES
    bucket, now, waited = TokenBucket(rate, 0.0), 0.0, 0.0
    for _ in range(100):   # 100 steps: 10 s of reading at the rate
        delay = bucket.reserve(SCRUB_STEP_BYTES, now)
        now += delay
        waited += delay
    assert abs(waited - 10.0) < 1e-6   # the bucket starts empty (protocol/ratelimit.py)


def test_a_complete_copy_keeps_its_damaged_pieces():
    meta = normalise_damaged({"complete": True, "digests": ["a", "b", "c"], "damaged": [2, 0, 2, 9, "x"]})
    assert meta["damaged"] == [0, 2] and meta["digests"] == ["a", "b", "c"]


def test_a_copy_still_being_written_resumes_before_its_first_damaged_piece():
    meta = normalise_damaged({"complete": False, "digests": ["a", "b", "c"], "damaged": [2, 1]})
    assert meta["digests"] == ["a"] and meta["damaged"] == []


def test_a_meta_without_a_damaged_list_has_none():
    assert normalise_damaged({"digests": ["a"]})["damaged"] == []
    assert normalise_damaged({"digests": ["a"], "damaged": "bad"})["damaged"] == []


def test_a_withdrawn_supernode_piece_is_not_assigned_until_cached_again():
    sched = TaskScheduler()
    sched.peer_joined("p", ("10.0.0.1", 1), 0.0)
    sched.piece_available(0)
    sched.piece_unavailable(0)
    assert sched.assign("p", 4, 0.0) == []
    sched.piece_available(0)
    assert [(a.piece, a.holder) for a in sched.assign("p", 4, 0.0)] == [(0, SUPERNODE)]


def test_a_peer_copy_found_bad_is_no_longer_offered_from_that_peer():
    sched = TaskScheduler()
    for peer in ("bad", "good", "new"):
        sched.peer_joined(peer, ("10.0.0.1", 1), 0.0)
    sched.piece_done("bad", 0, 0.0)
    sched.piece_lost("bad", 0)
    assert sched.holders_of(0) == set() and sched.pieces_of("bad") == set()
    assert sched.assign("new", 4, 0.0) == []   # nobody else holds it, the supernode neither
    sched.piece_done("good", 0, 0.0)
    assert [(a.piece, a.holder) for a in sched.assign("new", 4, 0.0)] == [(0, "good")]
    sched.piece_lost("nobody", 0)   # unknown peers and pieces are ignored
    sched.piece_lost("good", 5)
