"""The scheduler as pure policy: events in, assignments out, time passed as `now`."""
import copy
import random

import pytest

from dfly.supernode.scheduler import SUPERNODE, TIE_WINDOW, Assignment, SchedulerConfig, TaskScheduler

T0 = 1000.0


def scheduler(on_supernode=range(8), peers=(), **config) -> TaskScheduler:
    """A scheduler whose supernode holds `on_supernode` and knows `peers`, all joined at T0."""
    config.setdefault("cut_through", False)   # whole-piece planning: relays in test_scheduler_relays.py
    s = TaskScheduler(SchedulerConfig(**config))
    for num in on_supernode:
        s.piece_available(num)
    for i, peer_id in enumerate(peers):
        s.peer_joined(peer_id, ("10.0.0.%d" % (i + 1), 9000 + i), T0)
    return s


def holding(s: TaskScheduler, peer_id: str, nums, now: float = T0) -> None:
    for num in nums:
        s.piece_done(peer_id, num, now)


def nums(assignments):
    return [a.piece for a in assignments]


# asking --------------------------------------------------------------------------------

def test_an_unknown_peer_gets_no_pieces():
    s = scheduler(peers=["a"])
    assert s.assign("ghost", 4, T0) == []
    assert s.upload_load(SUPERNODE) == 0


@pytest.mark.parametrize("want", [0, -1, -100])
def test_a_peer_that_wants_nothing_gets_nothing_and_reserves_nothing(want):
    s = scheduler(peers=["a"])
    assert s.assign("a", want, T0) == []
    assert s.upload_load(SUPERNODE) == 0
    assert s.peers["a"].inflight == {}


def test_nothing_is_assigned_before_any_piece_exists():
    s = scheduler(on_supernode=(), peers=["a"])
    assert s.assign("a", 4, T0) == []


def test_a_lone_peer_gets_distinct_pieces_from_the_supernode_up_to_want():
    s = scheduler(on_supernode=range(8), peers=["a"])
    out = s.assign("a", 3, T0)
    assert len(out) == 3
    assert len(set(nums(out))) == 3
    assert set(nums(out)) <= set(range(8))
    assert {a.holder for a in out} == {SUPERNODE}
    assert s.upload_load(SUPERNODE) == 3


def test_a_peer_is_never_offered_a_piece_it_holds_or_is_already_fetching():
    s = scheduler(on_supernode=range(8), peers=["a"])
    holding(s, "a", range(6))
    assert sorted(nums(s.assign("a", 8, T0))) == [6, 7]
    assert s.assign("a", 8, T0) == []


def test_assigning_is_deterministic():
    def first_round():
        s = scheduler(on_supernode=range(16), peers=["a", "b", "c"])
        return [s.assign(p, 3, T0) for p in ("a", "b", "c")]
    assert first_round() == first_round()


def test_asking_counts_as_a_sign_of_life():
    s = scheduler(peers=["a"], peer_ttl_s=30.0)
    s.assign("a", 1, T0 + 25)
    assert s.expire(T0 + 50) == []
    assert "a" in s.peers


# rarest first ------------------------------------------------------------------------

def test_pieces_with_fewer_holders_are_offered_first():
    s = scheduler(on_supernode=range(4), peers=["h1", "h2", "r"])
    holding(s, "h1", [0, 1])
    holding(s, "h2", [0])
    out = s.assign("r", 4, T0)
    # 2 and 3 have no peer holder, 1 has one, 0 has two.
    assert set(nums(out[:2])) == {2, 3}
    assert out[2:] == [Assignment(1, "h1"), Assignment(0, "h2")]


def test_copies_in_flight_count_towards_rarity():
    s = scheduler(on_supernode=(), peers=["h", "a", "b"])
    holding(s, "h", [0, 1])
    [first] = s.assign("a", 1, T0)
    [second] = s.assign("b", 1, T0)
    assert {first.piece, second.piece} == {0, 1}
    assert first.holder == second.holder == "h"


def test_different_peers_start_on_different_pieces():
    s = scheduler(on_supernode=(), peers=["seed", "p1", "p2", "p3", "p4"],
                  max_uploads_per_peer=100)
    holding(s, "seed", range(16))
    taken = []
    for peer_id in ("p1", "p2", "p3", "p4"):
        taken.extend(nums(s.assign(peer_id, 2, T0)))
    assert len(taken) == 8
    assert len(set(taken)) == 8


def test_equally_rare_pieces_go_out_in_file_order_windows():
    # So the supernode hands out fresh pieces roughly in order and each peer's
    # verified prefix (and its whole-file digest) grows while it downloads.
    s = scheduler(on_supernode=range(64), peers=["p%d" % i for i in range(4)],
                  max_uploads_supernode=64)
    given = [a.piece for i in range(4) for a in s.assign("p%d" % i, 2, T0)]
    assert TIE_WINDOW >= 8 and sorted(given) == list(range(8))   # the first window, each once


def test_ties_between_equally_rare_pieces_are_broken_differently_per_peer():
    first_pieces = set()
    for i in range(12):
        s = scheduler(on_supernode=range(32), peers=["peer-%d" % i])
        first_pieces.add(s.assign("peer-%d" % i, 1, T0)[0].piece)
    assert len(first_pieces) > 1


def test_sequential_mode_gives_pieces_in_order():
    s = scheduler(on_supernode=range(10), peers=["h", "r"], max_uploads_supernode=64)
    holding(s, "h", [7])   # 7 is the most common piece; rarest first would offer it last
    assert nums(s.assign("r", 5, T0, sequential=True)) == [0, 1, 2, 3, 4]
    out = s.assign("r", 3, T0, sequential=True)
    assert out == [Assignment(5, SUPERNODE), Assignment(6, SUPERNODE), Assignment(7, "h")]



def test_sequential_mode_orders_by_piece_number_whatever_the_set_order():
    s = scheduler(on_supernode=[130, 2, 70, 65, 7], peers=["r"], max_uploads_supernode=64)
    assert nums(s.assign("r", 5, T0, sequential=True)) == [2, 7, 65, 70, 130]

# who serves --------------------------------------------------------------------------

def test_a_peer_that_holds_a_piece_serves_it_instead_of_the_supernode():
    s = scheduler(on_supernode=[0], peers=["h", "r"])
    holding(s, "h", [0])
    assert s.assign("r", 4, T0) == [Assignment(0, "h")]
    assert s.upload_load("h") == 1
    assert s.upload_load(SUPERNODE) == 0


def test_the_least_loaded_holder_serves():
    s = scheduler(on_supernode=(), peers=["h1", "h2", "x", "y"])
    holding(s, "h1", [0, 1, 2])
    holding(s, "h2", [0, 1, 2])
    [first] = s.assign("x", 1, T0)
    [second] = s.assign("y", 1, T0)
    assert first.holder == "h1"    # equal load: the lower id wins
    assert second.holder == "h2"
    assert first.piece != second.piece
    assert (s.upload_load("h1"), s.upload_load("h2")) == (1, 1)


def test_supernode_serves_a_piece_only_when_no_peer_has_it_or_is_fetching_it():
    s = scheduler(on_supernode=[0], peers=["a", "b"])
    assert s.assign("a", 1, T0) == [Assignment(0, SUPERNODE)]
    assert s.assign("b", 1, T0 + 1) == []
    assert s.upload_load(SUPERNODE) == 1


def test_a_peer_fetching_from_the_supernode_then_serves_the_others():
    s = scheduler(on_supernode=[0], peers=["a", "b"])
    s.assign("a", 1, T0)
    s.piece_done("a", 0, T0 + 2)
    assert s.assign("b", 1, T0 + 2) == [Assignment(0, "a")]
    assert s.upload_load(SUPERNODE) == 0
    assert s.holders_of(0) == {"a"}


@pytest.mark.parametrize("ends", ["slow", "broke"])
def test_a_begun_supernode_copy_is_waited_for_however_long_until_the_supernode_gives_up_on_it(ends):
    """A piece can take longer than piece_stall_s on its way: one of the fan-out's 16
    streams on a slow link (4 MiB at 25 Mbit/s: 21 s). The supernode watches the
    stream and says when its reader lags or it broke; till then it is no stall."""
    s = scheduler(on_supernode=[0], peers=["a", "b"], piece_stall_s=15.0)
    s.assign("a", 1, T0)
    s.supernode_started("a", 0, T0 + 0.1)
    assert s.assign("b", 1, T0 + 40.0) == []
    if ends == "slow":
        assert s.supernode_sent("a", 0, T0 + 40.0, slow=True) is True
    else:
        assert s.supernode_send_failed("a", 0) is True
    assert s.assign("b", 1, T0 + 40.1) == [Assignment(0, SUPERNODE)]


def test_a_begun_supernode_copy_is_waited_for_no_longer_than_the_stream_timeout():
    """The net, should the supernode never tell (a send it lost track of)."""
    s = scheduler(on_supernode=[0], peers=["a", "b"], stream_timeout_s=600.0, peer_ttl_s=10000.0)
    s.assign("a", 1, T0)
    s.supernode_started("a", 0, T0)
    assert s.assign("b", 1, T0 + 599) == []
    assert s.assign("b", 1, T0 + 601) == [Assignment(0, SUPERNODE)]


def test_a_busy_holder_is_waited_for_rather_than_loading_the_supernode():
    s = scheduler(on_supernode=[0, 1], peers=["h", "r"], max_uploads_per_peer=1)
    holding(s, "h", [0, 1])
    out = s.assign("r", 2, T0)
    assert len(out) == 1
    assert out[0].holder == "h"
    assert s.upload_load(SUPERNODE) == 0


def test_the_supernode_never_serves_more_than_its_upload_cap():
    s = scheduler(on_supernode=range(8), peers=["a", "b"], max_uploads_supernode=2)
    assert len(s.assign("a", 4, T0)) == 2
    assert s.assign("b", 4, T0) == []
    assert s.upload_load(SUPERNODE) == 2


def test_a_supernode_upload_is_released_when_the_piece_is_done():
    s = scheduler(on_supernode=range(8), peers=["a", "b"], max_uploads_supernode=1)
    [got] = s.assign("a", 1, T0)
    s.piece_done("a", got.piece, T0 + 1)
    assert s.upload_load(SUPERNODE) == 0
    [nxt] = s.assign("b", 1, T0 + 1)
    assert nxt.holder == SUPERNODE
    assert nxt.piece != got.piece


def test_a_supernode_upload_slot_is_free_once_the_piece_is_sent_before_it_is_reported():
    s = scheduler(on_supernode=range(8), peers=["a", "b"], max_uploads_supernode=1)
    [got] = s.assign("a", 1, T0)
    assert s.assign("b", 1, T0) == []
    assert s.supernode_sent("a", got.piece) is True
    assert s.upload_load(SUPERNODE) == 0
    [nxt] = s.assign("b", 1, T0)
    assert nxt.holder == SUPERNODE and nxt.piece != got.piece


def test_a_sent_piece_still_counts_as_on_its_way_so_it_leaves_the_supernode_once():
    s = scheduler(on_supernode=[0, 1], peers=["a", "b"], max_uploads_supernode=4)
    assert s.assign("a", 1, T0) == [Assignment(0, SUPERNODE)]
    s.supernode_sent("a", 0)
    assert s.assign("b", 2, T0) == [Assignment(1, SUPERNODE)]   # not piece 0 a second time


@pytest.mark.parametrize("settle", ["done", "failed", "left", "expired"])
def test_a_sent_supernode_upload_is_not_released_twice(settle):
    s = scheduler(on_supernode=range(8), peers=["a", "b", "c"], max_uploads_supernode=2,
                  assignment_timeout_s=10.0, start_timeout_s=10.0, peer_ttl_s=1000.0)
    [sent] = s.assign("a", 1, T0)
    [second] = s.assign("b", 1, T0 + 5)
    s.supernode_sent("a", sent.piece)
    [third] = s.assign("c", 1, T0 + 5)   # into the slot a's piece freed
    s.supernode_started("b", second.piece, T0 + 5)
    s.supernode_started("c", third.piece, T0 + 5)
    assert s.upload_load(SUPERNODE) == 2
    if settle == "done":
        s.piece_done("a", sent.piece, T0 + 11)
    elif settle == "failed":
        s.piece_failed("a", sent.piece, SUPERNODE, T0 + 11)
    elif settle == "left":
        s.peer_left("a")
    else:
        s.expire(T0 + 11)   # only a's assignment is stale
        assert sent.piece not in s.peers["a"].inflight
    assert s.upload_load(SUPERNODE) == 2   # b's and c's uploads are still going
    s.piece_done("b", second.piece, T0 + 12)
    s.piece_done("c", third.piece, T0 + 12)
    assert s.upload_load(SUPERNODE) == 0


def test_sent_is_counted_once_and_only_for_a_supernode_assignment():
    s = scheduler(on_supernode=[0, 1], peers=["a", "b", "h"])
    [got] = s.assign("a", 1, T0)
    assert s.supernode_sent("a", got.piece) is True
    assert s.supernode_sent("a", got.piece) is False   # the same send, told twice
    assert s.supernode_sent("a", 1 - got.piece) is False   # not assigned to a
    assert s.supernode_sent("ghost", got.piece) is False
    holding(s, "h", [2])
    holding(s, "b", [0, 1])
    assert s.assign("b", 1, T0) == [Assignment(2, "h")]
    assert s.supernode_sent("b", 2) is False   # h serves it, not the supernode
    assert s.upload_load(SUPERNODE) == 0


# per-holder upload cap ---------------------------------------------------------------

def test_a_holder_never_serves_more_than_max_uploads_per_peer():
    s = scheduler(on_supernode=(), peers=["h", "r1", "r2"], max_uploads_per_peer=2)
    holding(s, "h", range(6))
    assert len(s.assign("r1", 4, T0)) == 2
    assert s.assign("r2", 4, T0) == []
    assert s.upload_load("h") == 2


def test_a_finished_piece_frees_its_holder_for_the_next_requester():
    s = scheduler(on_supernode=(), peers=["h", "r1", "r2"], max_uploads_per_peer=2)
    holding(s, "h", range(6))
    first, second = s.assign("r1", 2, T0)
    s.piece_done("r1", first.piece, T0 + 1)
    assert s.upload_load("h") == 1
    [nxt] = s.assign("r2", 1, T0 + 1)
    # the two pieces r1 touched are no longer the rarest, so r2 gets a fresh one from h
    assert nxt.piece not in (first.piece, second.piece)
    assert nxt.holder == "h"
    assert s.upload_load("h") == 2


def test_a_failed_piece_frees_its_holder():
    s = scheduler(on_supernode=(), peers=["h", "r"], max_uploads_per_peer=2)
    holding(s, "h", range(6))
    first, _ = s.assign("r", 2, T0)
    s.piece_failed("r", first.piece, "h", T0 + 1)
    assert s.upload_load("h") == 1
    assert first.piece not in s.peers["r"].inflight


def test_a_failure_naming_another_holder_does_not_release_the_assignment():
    s = scheduler(on_supernode=(), peers=["h", "other", "r"])
    holding(s, "h", [0])
    assert s.assign("r", 1, T0) == [Assignment(0, "h")]
    s.piece_failed("r", 0, "other", T0 + 1)
    assert s.upload_load("h") == 1
    assert s.peers["r"].inflight[0] == ("h", T0)


# failures ----------------------------------------------------------------------------

def test_a_holder_that_failed_a_requester_is_not_asked_again_by_that_requester():
    s = scheduler(on_supernode=[0], peers=["h", "r", "s"])
    holding(s, "h", [0])
    assert s.assign("r", 1, T0) == [Assignment(0, "h")]
    s.piece_failed("r", 0, "h", T0 + 1)
    assert s.peers["r"].blacklist == {"h"}
    assert s.assign("r", 1, T0 + 1) == [Assignment(0, SUPERNODE)]
    # one report does not condemn h for everyone: once h is heard from, others use it
    s.peer_seen("h", T0 + 2)
    assert s.assign("s", 1, T0 + 2) == [Assignment(0, "h")]
    assert s.assign("r", 1, T0 + 2) == []


def test_a_holder_reported_failing_is_asked_by_no_one_until_it_is_heard_from():
    s = scheduler(on_supernode=[0, 1], peers=["h", "r", "s"])
    holding(s, "h", [0, 1])
    [first] = s.assign("r", 1, T0)
    assert first.holder == "h"
    s.piece_failed("r", first.piece, "h", T0 + 3)   # a stopped seeder: no answer
    # Others, who have not tried h yet, are not sent to it: the supernode serves them.
    assert {a.holder for a in s.assign("s", 2, T0 + 3)} == {SUPERNODE}
    s.piece_failed("s", 0, SUPERNODE, T0 + 4)
    s.piece_failed("s", 1, SUPERNODE, T0 + 4)
    s.peer_seen("h", T0 + 5)   # its heartbeat: alive after all
    assert {a.holder for a in s.assign("s", 2, T0 + 5)} == {"h"}


def test_a_holder_with_max_holder_errors_reports_is_skipped_by_everyone():
    s = scheduler(on_supernode=[0], peers=["h", "r1", "r2", "r3", "before", "after"],
                  max_holder_errors=3)
    holding(s, "h", [0])
    for reporter in ("r1", "r2"):
        assert s.assign(reporter, 1, T0) == [Assignment(0, "h")]
        s.piece_failed(reporter, 0, "h", T0)
        s.peer_seen("h", T0)   # alive: no longer suspect, but it has errors
    assert s.assign("before", 1, T0) == [Assignment(0, "h")]
    assert s.assign("r3", 1, T0) == [Assignment(0, "h")]
    s.piece_failed("r3", 0, "h", T0)
    assert s.peers["h"].errors == 3
    assert s.assign("after", 1, T0) == [Assignment(0, SUPERNODE)]


def test_a_peer_fetching_from_a_failing_holder_does_not_hold_back_the_supernode():
    s = scheduler(on_supernode=[0], peers=["bad", "r", "x"], max_holder_errors=1)
    holding(s, "bad", [7])
    s.piece_available(7)
    assert s.assign("bad", 1, T0) == [Assignment(0, SUPERNODE)]
    assert s.assign("x", 2, T0) == [Assignment(7, "bad")]   # 0 is on its way to bad: x waits
    s.piece_failed("x", 7, "bad", T0)    # someone else reports bad: it reaches max_holder_errors
    assert Assignment(0, SUPERNODE) in s.assign("r", 2, T0 + 1)


def test_failures_against_the_supernode_blacklist_nobody():
    s = scheduler(on_supernode=[0], peers=["r"])
    s.assign("r", 1, T0)
    s.piece_failed("r", 0, SUPERNODE, T0 + 1)
    assert s.peers["r"].blacklist == set()
    assert s.peers["r"].failures == 1
    assert s.upload_load(SUPERNODE) == 0


def test_a_requester_below_max_peer_failures_still_fetches_from_peers():
    s = scheduler(on_supernode=range(4), peers=["h", "r"], max_peer_failures=2)
    holding(s, "h", range(4))
    s.piece_failed("r", 0, SUPERNODE, T0)
    assert {a.holder for a in s.assign("r", 2, T0)} == {"h"}


def test_a_requester_with_max_peer_failures_is_served_by_the_supernode_only():
    s = scheduler(on_supernode=range(4), peers=["h", "r"], max_peer_failures=2,
                  max_uploads_supernode=64)
    holding(s, "h", range(4))
    s.piece_failed("r", 0, SUPERNODE, T0)
    s.piece_failed("r", 1, SUPERNODE, T0)
    out = s.assign("r", 4, T0)
    assert sorted(nums(out)) == [0, 1, 2, 3]
    assert {a.holder for a in out} == {SUPERNODE}
    assert s.upload_load("h") == 0


def test_a_requester_with_max_peer_failures_gets_nothing_the_supernode_lacks():
    s = scheduler(on_supernode=(), peers=["h", "r"], max_peer_failures=1)
    holding(s, "h", [0])
    s.piece_failed("r", 0, SUPERNODE, T0)
    assert s.assign("r", 1, T0) == []


# peers leaving -----------------------------------------------------------------------

def test_a_peer_that_left_is_forgotten_with_the_pieces_it_held():
    s = scheduler(on_supernode=[0], peers=["h", "r"])
    holding(s, "h", [0, 5])
    s.peer_left("h")
    assert "h" not in s.peers
    assert s.addr_of("h") is None
    assert s.holders_of(0) == set()
    assert s.holders_of(5) == set()
    # 5 existed only on h: it is no longer offered at all
    assert s.assign("r", 4, T0) == [Assignment(0, SUPERNODE)]


def test_a_peer_that_left_releases_the_uploads_it_was_receiving():
    s = scheduler(on_supernode=[1], peers=["h", "a"])
    holding(s, "h", [0])
    assert sorted(s.assign("a", 2, T0), key=lambda a: a.piece) == [
        Assignment(0, "h"), Assignment(1, SUPERNODE)]
    s.peer_left("a")
    assert s.upload_load("h") == 0
    assert s.upload_load(SUPERNODE) == 0


def test_a_piece_fetched_from_a_peer_that_left_stays_with_its_requester_until_reported():
    s = scheduler(on_supernode=[0], peers=["h", "r"])
    holding(s, "h", [0])
    assert s.assign("r", 1, T0) == [Assignment(0, "h")]
    s.peer_left("h")   # forgotten, say, while r's fetch from it still hangs
    assert s.assign("r", 1, T0 + 1) == []   # not planned again while that fetch runs
    assert s.upload_load(SUPERNODE) == 0
    s.piece_failed("r", 0, "h", T0 + 3)
    assert s.peers["r"].inflight == {}
    assert s.assign("r", 1, T0 + 3) == [Assignment(0, SUPERNODE)]


def test_a_peer_that_left_no_longer_counts_as_fetching_from_the_supernode():
    s = scheduler(on_supernode=[0], peers=["a", "b"])
    s.assign("a", 1, T0)
    s.peer_left("a")
    assert s.assign("b", 1, T0 + 1) == [Assignment(0, SUPERNODE)]
    assert s.upload_load(SUPERNODE) == 1


def test_leaving_twice_or_as_a_stranger_is_harmless():
    s = scheduler(peers=["a"])
    s.peer_left("ghost")
    s.peer_left("a")
    s.peer_left("a")
    assert s.peers == {}


def test_reports_from_unknown_peers_are_ignored():
    s = scheduler(on_supernode=[0], peers=["h"])
    s.piece_done("ghost", 0, T0)
    s.piece_failed("ghost", 0, "h", T0)
    assert s.holders_of(0) == set()
    assert s.peers["h"].errors == 0


def test_joining_again_updates_the_address_and_keeps_the_pieces():
    s = scheduler(on_supernode=(), peers=["h"])
    holding(s, "h", [3])
    s.peer_joined("h", ("10.9.9.9", 7000), T0 + 5)
    assert s.addr_of("h") == ("10.9.9.9", 7000)
    assert s.holders_of(3) == {"h"}
    assert s.peers["h"].last_seen == T0 + 5


def test_peer_seen_tells_whether_the_peer_is_known():
    s = scheduler(peers=["a"])
    assert s.peer_seen("a", T0 + 3) is True
    assert s.peers["a"].last_seen == T0 + 3
    assert s.peer_seen("ghost", T0 + 3) is False


# expiry ------------------------------------------------------------------------------

def test_expire_forgets_peers_silent_longer_than_peer_ttl():
    s = scheduler(on_supernode=[0], peers=["quiet", "chatty"], peer_ttl_s=30.0)
    holding(s, "quiet", [0])
    s.peer_seen("chatty", T0 + 20)
    assert s.expire(T0 + 30.0) == []
    assert s.expire(T0 + 30.5) == ["quiet"]
    assert set(s.peers) == {"chatty"}
    assert s.holders_of(0) == set()
    assert s.peer_seen("quiet", T0 + 31) is False
    assert s.assign("quiet", 1, T0 + 31) == []


def test_expire_releases_the_loads_of_forgotten_peers():
    s = scheduler(on_supernode=[1], peers=["h", "gone"], peer_ttl_s=30.0)
    holding(s, "h", [0])
    s.assign("gone", 2, T0)
    s.peer_seen("h", T0 + 25)
    assert s.expire(T0 + 31) == ["gone"]
    assert s.upload_load("h") == 0
    assert s.upload_load(SUPERNODE) == 0


def test_assignment_timeout_releases_stale_assignments():
    s = scheduler(on_supernode=(), peers=["h", "r"], assignment_timeout_s=60.0, peer_ttl_s=30.0)
    holding(s, "h", [0])
    assert s.assign("r", 1, T0) == [Assignment(0, "h")]
    for peer_id in ("h", "r"):
        s.peer_seen(peer_id, T0 + 59)
    assert s.expire(T0 + 60.0) == []
    assert s.upload_load("h") == 1          # exactly at the timeout: still running
    assert s.expire(T0 + 61.0) == []
    assert s.upload_load("h") == 0
    assert s.peers["r"].inflight == {}
    assert s.assign("r", 1, T0 + 61) == [Assignment(0, "h")]


def test_a_released_supernode_assignment_lets_another_peer_fetch_the_piece():
    s = scheduler(on_supernode=[0], peers=["a", "b"], assignment_timeout_s=10.0,
                  piece_stall_s=100.0, peer_ttl_s=1000.0)
    s.assign("a", 1, T0)
    assert s.assign("b", 1, T0 + 5) == []
    s.expire(T0 + 11)
    assert s.upload_load(SUPERNODE) == 0
    assert s.assign("b", 1, T0 + 11) == [Assignment(0, SUPERNODE)]


def test_a_supernode_fetch_never_begun_frees_its_slot_and_is_not_waited_for():
    s = scheduler(on_supernode=[0], peers=["dead", "b"], max_uploads_supernode=1,
                  start_timeout_s=5.0, piece_stall_s=15.0, peer_ttl_s=1000.0)
    assert s.assign("dead", 1, T0) == [Assignment(0, SUPERNODE)]   # killed before it asked
    assert s.assign("b", 1, T0 + 1) == []
    s.expire(T0 + 5.5)
    assert s.upload_load(SUPERNODE) == 0
    assert s.assign("b", 1, T0 + 5.5) == [Assignment(0, SUPERNODE)]
    s.piece_done("dead", 0, T0 + 6)   # it was alive after all: counted once
    assert s.upload_load(SUPERNODE) == 1


def test_a_begun_supernode_fetch_keeps_its_slot_past_the_start_timeout():
    s = scheduler(on_supernode=[0], peers=["a"], start_timeout_s=5.0, peer_ttl_s=1000.0)
    s.assign("a", 1, T0)
    s.supernode_started("a", 0, T0 + 0.1)
    s.expire(T0 + 6)
    assert s.upload_load(SUPERNODE) == 1


def test_a_piece_sent_whole_but_not_reported_is_not_waited_for_past_the_grace():
    s = scheduler(on_supernode=[0], peers=["slow", "b"], sent_grace_s=2.0, piece_stall_s=15.0)
    s.assign("slow", 1, T0)
    s.supernode_started("slow", 0, T0)
    assert s.supernode_sent("slow", 0, T0 + 0.5) is True
    assert s.assign("b", 1, T0 + 2.0) == []   # it will report any moment
    assert s.assign("b", 1, T0 + 2.6) == [Assignment(0, SUPERNODE)]   # it reads at 100 KB/s


def test_a_piece_that_took_long_to_send_gets_a_grace_as_long_as_its_last_bytes_take():
    """One of the fan-out's 16 streams at 6.25 Mbit/s: 1 MiB takes ~20 s, and the
    last bytes still on their way when the supernode calls it sent take seconds."""
    s = scheduler(on_supernode=[0], peers=["a", "b"], sent_grace_s=2.0, sent_grace_share=0.5)
    s.assign("a", 1, T0)
    s.supernode_started("a", 0, T0)
    assert s.supernode_sent("a", 0, T0 + 20) is True
    assert s.assign("b", 1, T0 + 25) == []    # arriving: a relay, or a copy to wait for
    assert s.assign("b", 1, T0 + 30.5) == [Assignment(0, SUPERNODE)]


def test_a_piece_given_up_on_for_a_slow_reader_is_not_waited_for_at_all():
    s = scheduler(on_supernode=[0], peers=["slow", "b"], max_uploads_supernode=1,
                  sent_grace_s=2.0, piece_stall_s=15.0)
    [got] = s.assign("slow", 1, T0)
    s.supernode_started("slow", got.piece, T0)
    assert s.supernode_sent("slow", got.piece, T0 + 3, slow=True) is True
    assert s.upload_load(SUPERNODE) == 0
    assert nums(s.assign("b", 1, T0 + 3)) == [got.piece]   # the slot, and no wait for its copy
    s.piece_done("slow", got.piece, T0 + 40)   # it got there in the end: counted once
    assert s.upload_load(SUPERNODE) == 1


def test_a_send_that_broke_releases_the_assignment_at_once():
    s = scheduler(on_supernode=[0], peers=["killed", "b"], max_uploads_supernode=1)
    s.assign("killed", 1, T0)
    s.supernode_started("killed", 0, T0)
    assert s.assign("b", 1, T0 + 0.5) == []
    assert s.supernode_send_failed("killed", 0) is True
    assert s.peers["killed"].inflight == {}
    assert s.upload_load(SUPERNODE) == 0
    assert s.assign("b", 1, T0 + 0.6) == [Assignment(0, SUPERNODE)]
    assert s.supernode_send_failed("killed", 0) is False   # nothing left to release


# narrowing the candidates ------------------------------------------------------------

def _reference_pick(s: TaskScheduler, peer, num: int, now: float):
    """The holder rule written as a plain scan of the piece's holders (what the
    scheduler's load index must agree with)."""
    cfg = s.config
    if peer.failures < cfg.max_peer_failures:
        usable = [s.peers[h] for h in s.holders_of(num)
                  if h != peer.peer_id and h not in peer.blacklist and h not in s._suspect
                  and s.peers[h].errors < cfg.max_holder_errors]
        free = [h for h in usable if h.uploads < cfg.max_uploads_per_peer]
        if free:
            return min(free, key=lambda h: (h.uploads, h.peer_id)).peer_id
        if usable or s._fresh_supernode_copy(peer, num, now):
            return None
    if num in s.supernode_pieces and s.upload_load(SUPERNODE) < cfg.max_uploads_supernode:
        return SUPERNODE
    return None


def _full_candidates(s: TaskScheduler, peer_id: str):
    peer = s.peers[peer_id]
    return [n for n in s._known_pieces() if n not in peer.held and n not in peer.inflight]


@pytest.mark.parametrize("seed", range(12))
def test_narrowed_candidates_give_the_same_answers_as_every_piece(seed):
    """While the supernode is full, assign() looks only at what peers with a free
    slot hold, and it finds holders through an index by load. Replay a random
    swarm and check each answer against the same scheduler state (a deep copy)
    asked with every piece as a candidate, and each holder against a plain scan."""
    rng = random.Random(seed)
    s = scheduler(on_supernode=range(24), peers=["p%d" % i for i in range(10)],
                  max_uploads_supernode=2, max_uploads_per_peer=2, max_holder_errors=2,
                  max_peer_failures=3)
    now, narrowed = T0, 0
    for step in range(600):
        now += 0.01
        peer_id = rng.choice(sorted(s.peers) or ["none"])
        if peer_id == "none":
            s.peer_joined("late%d" % step, ("10.0.1.1", step), now)
            continue
        peer = s.peers[peer_id]
        event = rng.random()
        if event < 0.45:
            want, sequential = rng.randint(1, 4), rng.random() < 0.1
            reference = copy.deepcopy(s)
            expected = reference._assign_from(reference.peers[peer_id], want, now, sequential,
                                              _full_candidates(reference, peer_id))
            narrowed += s.upload_load(SUPERNODE) >= 2
            for num in _full_candidates(s, peer_id):
                assert s._pick_holder(peer, num, now) == _reference_pick(s, peer, num, now), (seed, step)
            assert s.assign(peer_id, want, now, sequential) == expected, (seed, step)
        elif event < 0.75 and peer.inflight:
            s.piece_done(peer_id, rng.choice(sorted(peer.inflight)), now)
        elif event < 0.82 and peer.inflight:
            num = rng.choice(sorted(peer.inflight))
            s.piece_failed(peer_id, num, peer.inflight[num][0], now)
        elif event < 0.9 and peer.inflight:
            s.supernode_sent(peer_id, rng.choice(sorted(peer.inflight)))
        elif event < 0.93:
            s.peer_left(peer_id)
        elif event < 0.96:
            s.peer_joined("late%d" % step, ("10.0.1.1", step), now)
    assert narrowed > 50   # the narrowed path really ran


def test_while_the_supernode_is_full_only_pieces_a_free_holder_has_are_looked_at():
    s = scheduler(on_supernode=range(8), peers=["a", "b", "c", "d"], max_uploads_supernode=1,
                  max_uploads_per_peer=1)
    holding(s, "a", [0, 1])
    holding(s, "b", [2, 3])
    assert [x.holder for x in s.assign("d", 1, T0)] == [SUPERNODE]   # now the supernode is full
    assert sorted(s._candidates(s.peers["c"])) == [0, 1, 2, 3]
    (got,) = s.assign("c", 1, T0)                                     # that holder's one slot is taken
    other = {"a": [2, 3], "b": [0, 1]}[got.holder]
    assert sorted(s._candidates(s.peers["d"])) == other
    s.piece_done("c", got.piece, T0)                                  # free again, and c holds a piece
    assert sorted(s._candidates(s.peers["d"])) == [0, 1, 2, 3]


# address families -------------------------------------------------------------------------

def _mixed(**config) -> TaskScheduler:
    """v4a, v4b registered with IPv4 addresses; v6a, v6b with IPv6; named with a host name."""
    s = scheduler(on_supernode=range(8), **config)
    for peer_id, host in (("v4a", "10.0.0.1"), ("v4b", "10.0.0.2"), ("v6a", "2001:db8::1"),
                          ("v6b", "2001:db8::2"), ("named", "peer.example")):
        s.peer_joined(peer_id, (host, 9000), T0)
    return s


def test_peers_are_offered_only_holders_of_their_own_address_family():
    s = _mixed()
    holding(s, "v6a", range(8))
    assert {a.holder for a in s.assign("v4a", 4, T0)} == {SUPERNODE}   # not the IPv6 holder
    assert {a.holder for a in s.assign("v6b", 4, T0)} == {"v6a"}
    holding(s, "v4a", range(8))
    assert {a.holder for a in s.assign("v4b", 4, T0)} == {"v4a"}


def test_a_peer_known_by_name_trades_with_either_family():
    s = _mixed()
    holding(s, "named", range(8))
    assert {a.holder for a in s.assign("v4a", 2, T0)} == {"named"}
    assert {a.holder for a in s.assign("v6a", 2, T0)} == {"named"}
    s2 = _mixed()
    holding(s2, "v6a", range(8))
    assert {a.holder for a in s2.assign("named", 2, T0)} == {"v6a"}


def test_a_supernode_copy_on_its_way_to_the_other_family_does_not_hold_a_peer_back():
    s = _mixed(max_uploads_supernode=8)
    first = s.assign("v6a", 8, T0)
    assert {a.holder for a in first} == {SUPERNODE}
    # An IPv4 peer cannot wait for the IPv6 peer's copies: it gets its own from the supernode.
    assert s.assign("v4a", 8, T0 + 1) == []   # all 8 slots are in use...
    for a in first:
        s.supernode_sent("v6a", a.piece)
    assert len(s.assign("v4a", 8, T0 + 1)) == 8


def test_a_peer_that_re_registers_under_the_other_family_moves_with_it():
    s = _mixed()
    holding(s, "v6a", range(8))
    s.peer_joined("v6a", ("10.0.0.9", 9000), T0)
    assert {a.holder for a in s.assign("v4a", 2, T0)} == {"v6a"}
    s.peer_left("v6a")
    assert {a.holder for a in s.assign("v4b", 2, T0)} == {SUPERNODE}


# a requester that asks and never fetches ------------------------------------------------
def test_supernode_pieces_a_requester_never_starts_fetching_are_released_after_start_timeout():
    s = scheduler(on_supernode=range(8), peers=["hoarder", "honest"], max_uploads_supernode=4,
                  start_timeout_s=5.0)
    assert len(s.assign("hoarder", 64, T0)) == 4   # every slot of the supernode
    assert s.assign("honest", 4, T0 + 1) == []
    s.expire(T0 + 5.0)
    assert s.assign("honest", 4, T0 + 5.0) == []   # not yet: a few seconds to start
    s.expire(T0 + 5.1)
    assert [a.holder for a in s.assign("honest", 4, T0 + 5.1)] == [SUPERNODE] * 4


def test_a_started_supernode_fetch_keeps_its_slot_while_the_supernode_sends_it():
    """Past the assignment timeout too (a slow link's fan-out stream takes minutes):
    the supernode tells when it ends, breaks or lags; stream_timeout_s is the net."""
    s = scheduler(on_supernode=range(8), peers=["slow", "other"], max_uploads_supernode=1,
                  start_timeout_s=5.0, assignment_timeout_s=60.0, stream_timeout_s=600.0,
                  peer_ttl_s=10000.0)
    [a] = s.assign("slow", 1, T0)
    s.supernode_started("slow", a.piece, T0)
    s.expire(T0 + 30)
    assert s.assign("other", 1, T0 + 30) == []
    s.expire(T0 + 90)
    assert s.assign("other", 1, T0 + 90) == []
    s.expire(T0 + 600.1)
    assert nums(s.assign("other", 1, T0 + 600.1)) != []


def test_a_started_mark_for_a_piece_not_assigned_from_the_supernode_changes_nothing():
    s = scheduler(on_supernode=range(8), peers=["a", "b"], max_uploads_supernode=1, start_timeout_s=5.0)
    s.supernode_started("a", 3, T0)   # not given to a: no slot to keep
    [got] = s.assign("a", 1, T0)
    s.supernode_started("b", got.piece, T0)
    s.expire(T0 + 6)
    assert s.upload_load(SUPERNODE) == 0


def test_a_requester_holds_at_most_max_assignments_per_peer():
    s = scheduler(on_supernode=range(40), peers=["greedy"], max_uploads_supernode=100,
                  max_assignments_per_peer=6)
    assert len(s.assign("greedy", 64, T0)) == 6
    assert s.assign("greedy", 64, T0) == []
    s.piece_done("greedy", sorted(s.peers["greedy"].inflight)[0], T0)
    assert len(s.assign("greedy", 64, T0)) == 1


def test_the_defaults_release_an_unstarted_claim_within_seconds_not_a_minute():
    config = SchedulerConfig()
    assert config.start_timeout_s <= 10 < config.assignment_timeout_s
    assert 4 <= config.max_assignments_per_peer <= 64


def test_failure_reports_of_pieces_never_assigned_from_that_holder_do_not_count_against_it():
    s = scheduler(on_supernode=[0], peers=["h", "liar", "honest"], max_holder_errors=2)
    holding(s, "h", [0])
    for _ in range(10):   # anyone can register and report: only its own list changes
        s.piece_failed("liar", 0, "h", T0)
    assert s.peers["h"].errors == 0
    assert s.peers["liar"].blacklist == {"h"}
    assert s.assign("honest", 1, T0) == [Assignment(0, "h")]
