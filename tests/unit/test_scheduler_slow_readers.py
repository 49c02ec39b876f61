"""The supernode's slots and copies when readers are slow, stopped or never
start (the cases a mutation run left untested): exact time bounds, every copy
on its way considered in turn, and nothing of an old assignment carried over to
the next one of the same peer and piece."""
from dfly.supernode.scheduler import SUPERNODE, Assignment, SchedulerConfig, TaskScheduler

T0 = 1000.0


def scheduler(peers=("a", "b", "c"), **config) -> TaskScheduler:
    config.setdefault("start_timeout_s", 5.0)   # the defaults, named: the times below rely on them
    config.setdefault("sent_grace_s", 2.0)
    config.setdefault("cut_through", False)   # whole-piece planning: relays in test_scheduler_relays.py
    s = TaskScheduler(SchedulerConfig(**config))
    s.piece_available(0)
    for i, peer_id in enumerate(peers):
        s.peer_joined(peer_id, ("10.0.0.%d" % (i + 1), 9000 + i), T0)
    return s


FROM_SUPERNODE = [Assignment(0, SUPERNODE)]


# a fetch never begun ------------------------------------------------------------------------

def test_a_fetch_not_begun_frees_its_slot_just_after_start_timeout_not_at_it():
    s = scheduler()
    assert s.assign("a", 1, T0) == FROM_SUPERNODE
    s.expire(T0 + 5.0)
    assert s.upload_load(SUPERNODE) == 1
    s.expire(T0 + 5.1)
    assert s.upload_load(SUPERNODE) == 0


def test_a_fetch_that_began_keeps_its_slot_and_a_start_for_an_unknown_peer_changes_nothing():
    s = scheduler()
    assert s.assign("a", 1, T0) == FROM_SUPERNODE
    s.supernode_started("a", 0, T0 + 1)
    s.supernode_started("ghost", 0, T0 + 1)
    s.supernode_started("b", 0, T0 + 1)   # b was never assigned it
    s.expire(T0 + 6)
    assert s.upload_load(SUPERNODE) == 1


def test_a_new_assignment_of_the_same_piece_starts_unbegun():
    s = scheduler()
    assert s.assign("a", 1, T0) == FROM_SUPERNODE
    s.supernode_started("a", 0, T0)
    s.piece_failed("a", 0, SUPERNODE, T0 + 1)
    assert s.assign("a", 1, T0 + 1) == FROM_SUPERNODE
    s.expire(T0 + 6.5)                     # never begun this time
    assert s.upload_load(SUPERNODE) == 0


# which copies on their way are worth waiting for ----------------------------------------------

def test_a_copy_sent_whole_is_waited_for_up_to_the_grace_and_not_after():
    s = scheduler()
    assert s.assign("b", 1, T0) == FROM_SUPERNODE
    s.supernode_sent("b", 0, T0)
    assert s.assign("a", 1, T0 + 2.0) == []
    assert s.assign("a", 1, T0 + 2.1) == FROM_SUPERNODE


def test_past_a_slow_reader_the_next_copy_is_still_waited_for():
    s = scheduler()
    assert s.assign("b", 1, T0) == FROM_SUPERNODE
    s.supernode_sent("b", 0, T0, slow=True)
    assert s.assign("c", 1, T0) == FROM_SUPERNODE     # b's copy is not worth waiting for
    assert s.assign("a", 1, T0) == []                 # c's is


def test_past_a_reader_that_holds_its_bytes_unreported_the_next_copy_is_still_waited_for():
    s = scheduler()
    assert s.assign("b", 1, T0) == FROM_SUPERNODE
    s.supernode_sent("b", 0, T0)
    assert s.assign("c", 1, T0 + 3) == FROM_SUPERNODE
    assert s.assign("a", 1, T0 + 3.5) == []


def test_past_a_fetch_never_begun_the_next_copy_is_still_waited_for():
    s = scheduler()
    assert s.assign("b", 1, T0) == FROM_SUPERNODE
    assert s.assign("c", 1, T0 + 6) == FROM_SUPERNODE
    assert s.assign("a", 1, T0 + 6.5) == []


def test_a_reader_once_slow_is_waited_for_on_its_next_assignment():
    s = scheduler()
    assert s.assign("b", 1, T0) == FROM_SUPERNODE
    s.supernode_sent("b", 0, T0, slow=True)
    s.piece_failed("b", 0, SUPERNODE, T0 + 1)
    assert s.assign("b", 1, T0 + 1) == FROM_SUPERNODE
    assert s.assign("a", 1, T0 + 1) == []


def test_a_copy_sent_long_ago_does_not_make_the_next_assignment_look_unreported():
    s = scheduler()
    assert s.assign("b", 1, T0) == FROM_SUPERNODE
    s.supernode_sent("b", 0, T0)
    s.piece_failed("b", 0, SUPERNODE, T0 + 1)
    assert s.assign("b", 1, T0 + 10) == FROM_SUPERNODE
    assert s.assign("a", 1, T0 + 10.5) == []
