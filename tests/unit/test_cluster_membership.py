"""Supernode cluster membership and task ownership, with `now` passed in: who is
alive, who owns a task, and why a running swarm keeps its owner."""
import hashlib

from dfly.supernode.cluster import Membership, rendezvous_owner

A, B, C = "10.0.0.1:8002", "10.0.0.2:8002", "10.0.0.3:8002"
MEMBERS = [A, B, C]
TASKS = ["%064x" % n for n in range(300)]


def owned_by(member, members):
    return {t for t in TASKS if rendezvous_owner(t, members) == member}


# rendezvous_owner -------------------------------------------------------------------

def test_the_owner_is_the_member_with_the_highest_hash_of_member_and_task():
    """Every member (and every dfly version in a cluster) must compute the same owner."""
    for task in TASKS[:20]:
        best = max(MEMBERS, key=lambda m: hashlib.sha256(("%s|%s" % (m, task)).encode()).digest())
        assert rendezvous_owner(task, MEMBERS) == best
    assert [rendezvous_owner(t, MEMBERS) for t in ("a" * 64, "b" * 64, "c" * 64)] == [A, C, B]


def test_the_owner_does_not_depend_on_the_order_members_are_listed_in():
    for task in TASKS:
        assert rendezvous_owner(task, [C, A, B]) == rendezvous_owner(task, MEMBERS)


def test_no_members_no_owner_and_one_member_owns_everything():
    assert rendezvous_owner(TASKS[0], []) is None
    assert {rendezvous_owner(t, [B]) for t in TASKS} == {B}


def test_tasks_spread_over_every_member():
    shares = [len(owned_by(m, MEMBERS)) for m in MEMBERS]
    assert sum(shares) == len(TASKS)
    assert min(shares) > len(TASKS) // 6   # about a third each


def test_a_member_leaving_moves_only_its_own_tasks():
    for task in TASKS:
        before = rendezvous_owner(task, MEMBERS)
        after = rendezvous_owner(task, [A, C])
        if before != B:
            assert after == before
        else:
            assert after in (A, C)


# Membership: alive and dead ------------------------------------------------------------

def test_every_member_counts_as_alive_at_the_start():
    ms = Membership(A, [B, C], dead_after_s=3.0, now=100.0)
    assert ms.members == MEMBERS          # this member is added to the list it was given
    assert ms.alive(100.0) == MEMBERS
    assert ms.others() == [B, C]


def test_a_member_unheard_from_for_dead_after_is_dead():
    ms = Membership(A, MEMBERS, dead_after_s=3.0, now=100.0)
    ms.heard_from(C, [], now=101.0)
    assert ms.alive(103.0) == MEMBERS     # exactly dead_after_s: still alive
    assert ms.alive(103.5) == [A, C]      # B silent since 100.0
    assert ms.alive(104.5) == [A]         # C silent since 101.0; this member never dies


def test_a_dead_member_is_back_as_soon_as_it_answers():
    ms = Membership(A, MEMBERS, dead_after_s=3.0, now=100.0)
    assert B not in ms.alive(110.0)
    ms.heard_from(B, [], now=110.0)
    assert ms.alive(110.0) == [A, B]
    assert B in ms.alive(113.0) and B not in ms.alive(113.1)


def test_a_ping_from_an_address_not_in_the_member_list_changes_nothing():
    ms = Membership(A, [A, B], dead_after_s=3.0, now=100.0)
    ms.heard_from(C, ["t"], now=102.0)
    assert ms.members == [A, B]
    assert ms.alive(102.0) == [A, B]
    assert ms.owner("t", 102.0) == rendezvous_owner("t", [A, B])


def test_status_says_who_is_alive_when_last_heard_and_how_many_tasks_each_serves():
    ms = Membership(A, MEMBERS, dead_after_s=3.0, now=100.0)
    ms.heard_from(B, ["t1", "t2"], now=101.0001)   # ages are given to the millisecond
    assert ms.status(103.5) == [
        {"member": A, "self": True, "alive": True, "last_seen_s_ago": 0.0, "active_tasks": 0},
        {"member": B, "self": False, "alive": True, "last_seen_s_ago": 2.5, "active_tasks": 2},
        {"member": C, "self": False, "alive": False, "last_seen_s_ago": 3.5, "active_tasks": 0}]



def test_a_static_cluster_pings_every_other_member_and_pushes_digests_to_the_live_ones():
    ms = Membership(B, MEMBERS, dead_after_s=3.0, now=100.0)
    ms.heard_from(C, [], now=102.0)
    assert ms.sync_targets() == [A, C]             # the dead are pinged too: that is how they return
    assert ms.replica_targets("t", 103.5) == [C]   # A silent since 100.0: no push to it
    assert ms.keeps_replica("t", 103.5) is True    # every member copies every task's digests
    assert ms.signing_secrets() == []              # --cluster-secret alone


# Membership: ownership -------------------------------------------------------------------

def test_the_owner_is_the_hash_owner_among_the_live_members():
    ms = Membership(A, MEMBERS, dead_after_s=3.0, now=100.0)
    for task in TASKS[:50]:
        assert ms.owner(task, 100.0) == rendezvous_owner(task, MEMBERS)
    ms.heard_from(C, [], now=102.0)     # B dies at 103.0
    for task in TASKS[:50]:
        assert ms.owner(task, 104.0) == rendezvous_owner(task, [A, C])


def test_ownership_sticks_to_the_member_serving_a_live_swarm_when_the_old_owner_returns():
    task = next(iter(owned_by(B, MEMBERS) & owned_by(C, [A, C])))
    ms = Membership(A, MEMBERS, dead_after_s=3.0, now=100.0)
    ms.heard_from(C, [], now=102.0)
    assert ms.owner(task, 104.0) == C      # B, the hash owner, is dead: C takes the task
    ms.heard_from(C, [task], now=104.0)    # and serves it
    ms.heard_from(B, [], now=105.0)        # B returns
    assert ms.owner(task, 105.0) == C      # C keeps the running swarm
    ms.heard_from(C, [], now=106.0)        # the swarm is over
    assert ms.owner(task, 106.0) == B      # the hash owner has it again


def test_a_member_serving_a_task_here_keeps_it_whoever_the_hash_picks():
    task = next(iter(owned_by(B, MEMBERS)))
    ms = Membership(A, MEMBERS, dead_after_s=3.0, now=100.0)
    assert ms.owner(task, 100.0) == B
    assert ms.owner(task, 100.0, serving_here=True) == A


def test_a_dead_member_serving_a_task_does_not_keep_it():
    task = next(iter(owned_by(A, MEMBERS)))
    ms = Membership(A, MEMBERS, dead_after_s=3.0, now=100.0)
    ms.heard_from(B, [task], now=100.0)
    assert ms.owner(task, 102.0) == B      # B serves it: sticky
    ms.heard_from(C, [], now=103.5)
    assert ms.owner(task, 103.5) == A      # B is dead: back to the hash over the live ones


def test_two_members_serving_one_task_agree_on_one_of_them():
    """After a split brain heals, both claim the task: every member picks the same."""
    task = TASKS[7]
    ms = Membership(A, MEMBERS, dead_after_s=3.0, now=100.0)
    ms.heard_from(B, [task], now=100.0)
    ms.heard_from(C, [task], now=100.0)
    assert ms.owner(task, 100.0) == rendezvous_owner(task, [B, C])
