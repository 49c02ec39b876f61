"""The scheduler's bookkeeping, case by case (the survivors of a mutation run,
docs/TESTING.md): who a peer is after it registers again, when it counts as heard
from, what each holder can serve, and how copies in flight count towards rarity."""
from dfly.supernode.scheduler import SUPERNODE, TIE_WINDOW, Assignment, SchedulerConfig, TaskScheduler

T0 = 1000.0
LATER = TIE_WINDOW   # a piece in the second tie window: it loses every tie to piece 0


def scheduler(on_supernode=(0, LATER), peers=(), **config) -> TaskScheduler:
    config.setdefault("cut_through", False)   # whole-piece planning: relays in test_scheduler_relays.py
    s = TaskScheduler(SchedulerConfig(**config))
    for num in on_supernode:
        s.piece_available(num)
    for i, peer_id in enumerate(peers):
        s.peer_joined(peer_id, ("10.0.0.%d" % (i + 1), 9000 + i), T0)
    return s


def holding(s, peer_id, nums, now=T0):
    for num in nums:
        s.piece_done(peer_id, num, now)


# who a peer is ------------------------------------------------------------------------

def test_a_peer_that_registers_again_keeps_what_it_holds_and_takes_its_new_address():
    s = scheduler(on_supernode=[0], peers=["a", "b"])
    holding(s, "a", [0])
    assert s.addr_of("a") == ("10.0.0.1", 9000)
    s.peer_joined("a", ("10.0.0.9", 9100), T0 + 1)
    assert s.addr_of("a") == ("10.0.0.9", 9100)
    assert s.pieces_of("a") == {0}
    assert s.assign("b", 1, T0 + 1) == [Assignment(0, "a")]


def test_a_peer_silent_for_the_peer_ttl_after_it_joined_is_forgotten():
    s = scheduler(peers=["a"], peer_ttl_s=30.0)
    assert s.expire(T0 + 30.0) == []
    assert s.expire(T0 + 30.5) == ["a"]
    assert s.addr_of("a") is None


def test_a_failure_report_counts_as_a_sign_of_life():
    s = scheduler(peers=["a", "b"], peer_ttl_s=30.0)
    s.piece_failed("a", 0, "b", T0 + 20.0)
    assert s.expire(T0 + 40.0) == ["b"]


def test_a_peer_dropped_for_its_errors_is_offered_again_once_it_left_and_came_back():
    """It came back as a new process (a restart): its old errors are not held against it."""
    s = scheduler(on_supernode=[0], peers=["bad", "x"], max_holder_errors=1)
    holding(s, "bad", [0])
    assert s.assign("x", 1, T0) == [Assignment(0, "bad")]
    s.piece_failed("x", 0, "bad", T0)
    s.peer_left("bad")
    s.peer_joined("bad", ("10.0.0.1", 9000), T0)
    holding(s, "bad", [0])
    s.peer_joined("y", ("10.0.0.3", 9002), T0)
    assert s.assign("y", 1, T0) == [Assignment(0, "bad")]


# what each holder can serve -------------------------------------------------------------

def test_pieces_of_says_what_the_supernode_and_each_peer_can_serve():
    s = scheduler(on_supernode=[0, 1, 2], peers=["a"])
    holding(s, "a", [1])
    assert s.pieces_of(SUPERNODE) == {0, 1, 2}
    assert s.pieces_of("a") == {1}
    assert s.pieces_of("ghost") == set()
    s.pieces_of(SUPERNODE).add(7)   # a copy: the caller cannot change the scheduler's sets
    assert s.pieces_of(SUPERNODE) == {0, 1, 2}


def test_an_unknown_holder_has_no_upload_load():
    s = scheduler(peers=["a"])
    assert s.upload_load("ghost") == 0
    assert s.upload_load("a") == 0


# waiting for a copy on its way from the supernode ----------------------------------------

def test_a_peer_waits_for_a_copy_another_peer_is_fetching_from_the_supernode():
    s = scheduler(on_supernode=[0], peers=["a", "b"])
    assert s.assign("b", 1, T0) == [Assignment(0, SUPERNODE)]
    assert s.assign("a", 1, T0) == []


def test_a_copy_on_its_way_to_a_peer_the_requester_blacklisted_is_not_waited_for():
    s = scheduler(on_supernode=[0], peers=["a", "b"])
    s.piece_failed("a", 3, "b", T0)                       # a got a bad piece from b
    assert s.assign("b", 1, T0) == [Assignment(0, SUPERNODE)]
    assert s.assign("a", 1, T0) == [Assignment(0, SUPERNODE)]


def test_every_copy_on_its_way_is_considered_not_only_the_first():
    """b's copy is of no use to a (blacklisted), c's is: a waits for c's."""
    s = scheduler(on_supernode=[0], peers=["a", "b", "c"], piece_stall_s=15.0)
    s.piece_failed("a", 3, "b", T0)
    assert s.assign("b", 1, T0) == [Assignment(0, SUPERNODE)]
    assert s.assign("c", 1, T0 + 16) == [Assignment(0, SUPERNODE)]   # b's copy looks stalled
    assert s.assign("a", 1, T0 + 17) == []


def test_a_copy_on_its_way_to_a_dropped_peer_is_not_waited_for_but_the_next_one_is():
    s = scheduler(on_supernode=[], peers=["a", "b", "c", "d"], max_holder_errors=1, piece_stall_s=15.0)
    holding(s, "b", [3])
    assert s.assign("d", 1, T0) == [Assignment(3, "b")]
    s.piece_failed("d", 3, "b", T0)                       # b served it badly: dropped as a holder
    s.piece_available(0)
    assert s.assign("b", 1, T0) == [Assignment(0, SUPERNODE)]
    assert s.assign("c", 1, T0) == [Assignment(0, SUPERNODE)]   # b's copy does not count
    assert s.assign("a", 1, T0 + 1) == []                        # c's does


# copies in flight count towards rarity ------------------------------------------------------

def test_a_piece_on_its_way_to_a_peer_counts_as_one_more_copy():
    s = scheduler(peers=["h1", "h2", "p1", "p2"])
    holding(s, "h1", [0, LATER])
    holding(s, "h2", [LATER])                # piece 0: one copy, the later one: two
    assert s.assign("p1", 1, T0) == [Assignment(0, "h1")]
    # piece 0 now has two copies (one on its way): a tie, which the earlier window wins
    assert [a.piece for a in s.assign("p2", 1, T0)] == [0]


def test_each_copy_in_flight_counts_not_just_the_first():
    s = scheduler(peers=["h", "p1", "p2", "p3", "p4"])
    holding(s, "h", [0, LATER])
    picks = [s.assign(p, 1, T0)[0].piece for p in ("p1", "p2", "p3", "p4")]
    assert picks == [0, LATER, 0, LATER]     # always the piece with fewer copies on their way


def test_a_transfer_that_failed_no_longer_counts_as_a_copy():
    s = scheduler(peers=["h", "p1", "p2"])
    holding(s, "h", [0, LATER])
    assert s.assign("p1", 1, T0) == [Assignment(0, "h")]
    s.piece_failed("p1", 0, "h", T0)
    assert [a.piece for a in s.assign("p2", 1, T0)] == [0]   # one copy each again: the tie


# the supernode's upload slots ------------------------------------------------------------

def test_each_settled_supernode_transfer_frees_exactly_one_slot():
    s = scheduler(on_supernode=[0, LATER], peers=["a", "b"])
    [first] = s.assign("a", 1, T0)
    s.assign("b", 1, T0)
    assert s.upload_load(SUPERNODE) == 2
    s.piece_done("a", first.piece, T0)
    assert s.upload_load(SUPERNODE) == 1


def test_a_piece_sent_again_after_a_failure_frees_its_slot_when_sent_again():
    s = scheduler(on_supernode=[0], peers=["a"])
    assert s.assign("a", 1, T0) == [Assignment(0, SUPERNODE)]
    assert s.supernode_sent("a", 0) is True
    assert s.upload_load(SUPERNODE) == 0
    s.piece_failed("a", 0, SUPERNODE, T0)          # it arrived broken
    assert s.assign("a", 1, T0) == [Assignment(0, SUPERNODE)]
    assert s.upload_load(SUPERNODE) == 1
    assert s.supernode_sent("a", 0) is True        # the second sending frees the slot too
    assert s.upload_load(SUPERNODE) == 0


def test_when_one_of_two_copies_from_the_supernode_fails_the_other_is_still_waited_for():
    s = scheduler(on_supernode=[0], peers=["a", "b", "c"], piece_stall_s=15.0)
    assert s.assign("b", 1, T0) == [Assignment(0, SUPERNODE)]
    assert s.assign("c", 1, T0 + 16) == [Assignment(0, SUPERNODE)]   # b's copy looks stalled
    s.piece_failed("b", 0, SUPERNODE, T0 + 17)
    assert s.assign("a", 1, T0 + 17) == []                          # c's is on its way


def test_when_one_of_two_copies_in_flight_fails_the_other_still_counts():
    s = scheduler(peers=["h", "p1", "p2", "p3"])
    holding(s, "h", [0, LATER])
    assert s.assign("p1", 1, T0) == [Assignment(0, "h")]
    assert sorted(a.piece for a in s.assign("p2", 2, T0)) == [0, LATER]   # piece 0: two on their way
    s.piece_failed("p2", LATER, "h", T0)
    s.piece_failed("p1", 0, "h", T0)       # piece 0: one still on its way, to p2
    assert [a.piece for a in s.assign("p3", 1, T0)] == [LATER]   # 1 copy, against piece 0's 2


# address families ----------------------------------------------------------------------------

def test_a_peer_back_under_another_address_family_is_known_by_its_new_one_only():
    """It came back IPv6-only: IPv6 peers fetch from it, IPv4-only ones cannot."""
    s = scheduler(on_supernode=[0], peers=["a"])
    s.peer_joined("b", ("fd00::2", 9001), T0)
    s.peer_joined("x", ("10.0.0.9", 9100), T0)
    s.peer_left("x")
    s.peer_joined("x", ("fd00::9", 9100), T0)
    holding(s, "x", [0])
    assert s.assign("b", 1, T0) == [Assignment(0, "x")]
    assert s.assign("a", 1, T0) == [Assignment(0, SUPERNODE)]


def test_a_peer_known_by_name_can_register_again_and_leave():
    s = scheduler(on_supernode=[0], peers=["a"])
    s.peer_joined("n", ("peer.example", 9100), T0)
    s.peer_joined("n", ("peer.example", 9101), T0 + 1)
    holding(s, "n", [0])
    assert s.assign("a", 1, T0 + 1) == [Assignment(0, "n")]
    s.peer_left("n")
    assert s.addr_of("n") is None


def test_a_peer_is_dated_from_its_first_registration_not_from_a_later_one():
    # The dashboard's per-peer rate divides what it got by the time since it joined.
    s = TaskScheduler(SchedulerConfig())
    s.peer_joined("p", ("10.0.0.1", 9000), T0)
    s.peer_joined("p", ("10.0.0.1", 9000), T0 + 30)
    assert s.peers["p"].joined_at == T0 and s.peers["p"].last_seen == T0 + 30
