"""Cut-through in the scheduler (pure): a peer still fetching a piece may be
named as its holder (a relay) when no whole copy is free, so a piece spreads a
block behind its source instead of one hop per whole piece; which fetches
qualify, which relay wins, no loops, and who is blamed when a relay fails."""
import copy
import random

import pytest

from dfly.protocol.messages import RELAY_STOPPED
from dfly.supernode.scheduler import SUPERNODE, Assignment, SchedulerConfig, TaskScheduler

T0 = 1000.0
STOPPED = "%s: short piece: 262144 of 1048576 bytes" % RELAY_STOPPED


def scheduler(peers=("a", "b", "c"), on_supernode=(0,), locations=None, **config) -> TaskScheduler:
    s = TaskScheduler(SchedulerConfig(**config))
    for num in on_supernode:
        s.piece_available(num)
    for i, peer_id in enumerate(peers):
        s.peer_joined(peer_id, ("10.0.0.%d" % (i + 1), 9000 + i), T0,
                      location=(locations or {}).get(peer_id, ()))
    return s


def fetching_from_supernode(s, peer_id, num=0, now=T0):
    assert s.assign(peer_id, 1, now) == [Assignment(num, SUPERNODE)]
    s.supernode_started(peer_id, num, now)


def test_a_peer_fetching_a_piece_from_the_supernode_relays_it_at_once():
    s = scheduler()
    fetching_from_supernode(s, "a")
    assert s.assign("b", 1, T0) == [Assignment(0, "a")]
    assert s.upload_load("a") == 1 and s.peers["b"].relayed == {0}


def test_without_cut_through_the_second_peer_waits_for_the_whole_copy():
    s = scheduler(cut_through=False)
    fetching_from_supernode(s, "a")
    assert s.assign("b", 1, T0) == []


def test_a_relayed_fetch_holds_a_download_slot_unless_relay_slots_are_free():
    """Without the fan-out, the order says `relay` (the peer then asks for another
    piece beside it) only with free_relay_slots: bench/swarm_sim.py has the
    supernode's link emptier and the swarm 12-17 % slower when requesters run
    twice their slots (test_scheduler_fanout.py has the fan-out's streams)."""
    for free in (False, True):
        s = scheduler(peers=("a", "b", "holder"), free_relay_slots=free, fanout=0)
        fetching_from_supernode(s, "a")
        assert s.assign("b", 1, T0) == [Assignment(0, "a")] and s.relayed_to("b", 0)
        assert s.frees_slot("b", 0) is free
        assert not s.frees_slot("a", 0)   # from the supernode: a slot, either way
        s.piece_available(1)
        s.piece_done("holder", 1, T0)
        assert s.assign("b", 1, T0) == [Assignment(1, "holder")]
        assert not s.frees_slot("b", 1)   # from a whole copy: a slot, either way


def test_a_whole_copy_with_a_free_slot_is_taken_before_a_relay():
    s = scheduler(peers=("a", "b", "holder"))
    fetching_from_supernode(s, "a")
    s.piece_done("holder", 0, T0)
    assert s.assign("b", 1, T0) == [Assignment(0, "holder")]
    assert s.peers["b"].relayed == set()


def test_a_busy_whole_copy_is_waited_for_rather_than_a_relay():
    s = scheduler(peers=("a", "b", "c", "holder"), max_uploads_per_peer=1)
    fetching_from_supernode(s, "a")
    s.piece_done("holder", 0, T0)
    assert s.assign("b", 1, T0) == [Assignment(0, "holder")]
    assert s.assign("c", 1, T0) == []   # holder frees its slot in a piece's time: sooner
                                        # than a relay, which goes at its own source's pace


def test_a_relay_fed_by_a_relay_is_passed_over_unless_chains_are_allowed():
    """On the testbed a chain of relays went at its slowest link's pace (8 hosts:
    8.2 s with chains, 7.6 s without); the simulator likes them for big pieces."""
    for chains in (False, True):
        s = scheduler(max_uploads_per_peer=1, relay_chains=chains, fanout=0)
        fetching_from_supernode(s, "a")
        assert s.assign("b", 1, T0) == [Assignment(0, "a")]
        # a is full: c waits for a whole copy, or takes b, a block behind a
        assert s.assign("c", 1, T0) == ([Assignment(0, "b")] if chains else [])


def test_a_relay_fed_by_a_whole_copy_still_relays_without_chains():
    s = scheduler(peers=("holder", "a", "b"), max_uploads_per_peer=1, max_uploads_supernode=0)
    s.piece_done("holder", 0, T0)
    assert s.assign("a", 1, T0) == [Assignment(0, "holder")]
    s.peers["b"].blacklist.add("holder")   # no whole copy for b
    assert s.assign("b", 1, T0 + 1) == [Assignment(0, "a")]


def test_a_relay_is_never_fed_by_its_requester_not_even_through_others():
    s = scheduler(peers=("a", "b", "c", "d"), max_uploads_per_peer=1, max_uploads_supernode=1,
                  relay_chains=True)
    fetching_from_supernode(s, "a")
    assert s.assign("b", 1, T0) == [Assignment(0, "a")]
    assert s.assign("c", 1, T0) == [Assignment(0, "b")]
    s.piece_failed("a", 0, SUPERNODE, T0 + 1, "transfer broke: timed out")   # a lost its source
    # b and c still fetch from a (their failures come later): a must not relay from them.
    assert s.assign("a", 1, T0 + 1) == [Assignment(0, SUPERNODE)]
    assert s.assign("d", 1, T0 + 1) == [Assignment(0, "c")]


def test_a_supernode_fetch_not_begun_or_past_its_grace_is_no_relay():
    s = scheduler(start_timeout_s=5.0, sent_grace_s=2.0)
    assert s.assign("a", 1, T0) == [Assignment(0, SUPERNODE)]
    assert s.assign("b", 1, T0 + 1) == []   # not asked for yet: a claim, no relay (b waits)
    s.supernode_started("a", 0, T0 + 1)
    assert s.assign("b", 1, T0 + 1) == [Assignment(0, "a")]
    s = scheduler(start_timeout_s=5.0, sent_grace_s=2.0, max_uploads_supernode=1, fanout=0)
    assert s.assign("a", 1, T0) == [Assignment(0, SUPERNODE)]
    assert s.assign("b", 1, T0 + 6) == []   # not begun in 5 s: dead, or it ignored the piece
    s = scheduler(start_timeout_s=5.0, sent_grace_s=2.0, max_uploads_supernode=1, relay_chains=True)
    fetching_from_supernode(s, "a")
    s.supernode_sent("a", 0, T0 + 1)
    assert s.assign("b", 1, T0 + 2) == [Assignment(0, "a")]
    # a got it whole 3 s ago and does not report it: a slow reader, no relay; b (fed by
    # a, begun 2 s ago) still is.
    assert s.assign("c", 1, T0 + 4) == [Assignment(0, "b")]


def test_a_fetch_between_peers_relays_until_the_piece_stall_time():
    s = scheduler(peers=("holder", "a", "b", "c"), max_uploads_per_peer=1, piece_stall_s=15.0,
                  max_uploads_supernode=0, fanout=0)
    s.piece_done("holder", 0, T0)
    assert s.assign("a", 1, T0) == [Assignment(0, "holder")]
    for peer_id in ("b", "c"):   # no whole copy for them (else its slot is waited for)
        s.peers[peer_id].blacklist.add("holder")
    assert s.assign("b", 1, T0 + 15) == [Assignment(0, "a")]
    s.piece_failed("b", 0, "a", T0 + 15, STOPPED)
    assert s.assign("c", 1, T0 + 15.1) == []   # a's fetch began 15.1 s ago: stalled


def test_a_relay_the_supernode_feeds_serves_past_the_piece_stall_time_while_its_stream_goes_on():
    """Its stream is one of the fan-out's on a slow link: the supernode watches it,
    and only what it says ends the relay's turn, not the clock."""
    s = scheduler(peers=("a", "b", "c"), piece_stall_s=15.0)
    fetching_from_supernode(s, "a")
    assert s.assign("b", 1, T0 + 30) == [Assignment(0, "a")]
    s.supernode_sent("a", 0, T0 + 31, slow=True)   # its reader lags now
    assert s.assign("c", 1, T0 + 31) == [Assignment(0, SUPERNODE)]


def test_a_fetch_the_supernode_still_sends_outlives_the_assignment_timeout():
    """One of the fan-out's 16 streams at 6.25 Mbit/s: a 4 MiB piece takes 86 s.
    Its follower's fetch, from the peer it relays through, lives as long."""
    s = scheduler(peers=("a", "b"), assignment_timeout_s=60.0, peer_ttl_s=1000.0)
    assert s.assign("a", 1, T0) == [Assignment(0, SUPERNODE)]
    s.supernode_started("a", 0, T0)
    assert s.assign("b", 1, T0) == [Assignment(0, "a")]
    s.expire(T0 + 80)
    assert 0 in s.peers["a"].inflight and 0 in s.peers["b"].inflight
    assert s.supernode_sent("a", 0, T0 + 86) is True
    s.expire(T0 + 87)   # sent: the reports are due now, as for any assignment
    assert s.peers["a"].inflight == {} and s.peers["b"].inflight == {}


def test_the_nearest_relay_wins_then_the_least_loaded():
    s = scheduler(peers=("h1", "h2", "far", "near", "me"), max_uploads_per_peer=1,
                  max_uploads_supernode=0,
                  locations={"far": ("eu", "b"), "near": ("eu", "a"), "me": ("eu", "a")})
    for holder in ("h1", "h2"):
        s.piece_done(holder, 0, T0)
    assert s.assign("far", 1, T0) == [Assignment(0, "h1")]
    assert s.assign("near", 1, T0 + 1) == [Assignment(0, "h2")]
    s.peers["me"].blacklist.update(("h1", "h2"))   # no whole copy for it
    assert s.assign("me", 1, T0 + 1) == [Assignment(0, "near")]   # begun later, but near
    s = scheduler(peers=("h1", "h2", "a", "b", "x", "me"), max_uploads_per_peer=2,
                  max_uploads_supernode=0)
    for holder in ("h1", "h2"):
        s.piece_done(holder, 0, T0)
    assert s.assign("a", 1, T0) == [Assignment(0, "h1")]
    assert s.assign("b", 1, T0) == [Assignment(0, "h2")]
    for peer_id in ("x", "me"):   # no whole copy for them
        s.peers[peer_id].blacklist.update(("h1", "h2"))
    assert s.assign("x", 1, T0) == [Assignment(0, "a")]    # equal: by id
    assert s.assign("me", 1, T0) == [Assignment(0, "b")]   # a has one upload now


def test_a_relay_in_another_zone_is_not_used_while_a_copy_comes_into_the_requesters():
    zone_a, zone_b = ("eu", "a", "r1"), ("eu", "b", "r1")
    s = scheduler(peers=("far", "near", "me"), max_uploads_supernode=1,
                  locations={"far": zone_b, "near": zone_a, "me": zone_a})
    fetching_from_supernode(s, "far")
    assert s.assign("near", 1, T0) == [Assignment(0, "far")]   # the one crossing (a relay)
    # "near", itself relayed, relays nothing on: "far" could, but that is a second crossing
    assert s.assign("me", 1, T0 + 1) == []
    s.piece_done("near", 0, T0 + 2)
    assert s.assign("me", 1, T0 + 2) == [Assignment(0, "near")]


def test_no_relay_of_the_other_address_family_or_on_the_blacklist():
    s = TaskScheduler(SchedulerConfig(max_uploads_supernode=1, fanout=0))
    s.piece_available(0)
    s.peer_joined("v6", ("fd00::1", 9000), T0)
    s.peer_joined("v4", ("10.0.0.1", 9001), T0)
    fetching_from_supernode(s, "v6")
    assert s.assign("v4", 1, T0) == []
    s = scheduler(max_uploads_supernode=1, fanout=0)
    fetching_from_supernode(s, "a")
    s.peers["b"].blacklist.add("a")
    assert s.assign("b", 1, T0) == []


def test_a_relay_that_stopped_is_not_blamed_and_the_requester_gets_a_whole_copy_next():
    s = scheduler(max_uploads_supernode=2)
    fetching_from_supernode(s, "a")
    assert s.assign("b", 1, T0) == [Assignment(0, "a")]
    s.piece_failed("b", 0, "a", T0 + 1, STOPPED)
    assert s.peers["b"].blacklist == set() and s.peers["a"].errors == 0
    assert s.peers["b"].failures == 0 and s.upload_load("a") == 0
    assert s.assign("b", 1, T0 + 1) == []   # no relay again: a's whole copy is waited for
    s.piece_done("a", 0, T0 + 2)
    assert s.assign("b", 1, T0 + 2) == [Assignment(0, "a")]
    s.piece_done("b", 0, T0 + 3)
    assert s.peers["b"].no_relay == set()


def test_a_relay_that_had_dropped_the_piece_is_not_blamed_either():
    s = scheduler(max_uploads_supernode=1)
    fetching_from_supernode(s, "a")
    assert s.assign("b", 1, T0) == [Assignment(0, "a")]
    s.piece_failed("b", 0, "a", T0 + 1, "holder answered 404")
    assert s.peers["a"].errors == 0 and "a" not in s.peers["b"].blacklist


@pytest.mark.parametrize("reason", ["digest mismatch in block 1 (bytes 262144-524287 of the piece)",
                                    "transfer broke: timed out", "holder answered 403"])
def test_a_relay_that_sends_a_bad_block_or_stalls_itself_is_blamed(reason):
    s = scheduler(max_uploads_supernode=1)
    fetching_from_supernode(s, "a")
    assert s.assign("b", 1, T0) == [Assignment(0, "a")]
    s.piece_failed("b", 0, "a", T0 + 1, reason)
    assert s.peers["b"].blacklist == {"a"} and s.peers["a"].errors == 1
    assert s.assign("c", 1, T0 + 1) == []   # a is suspect until heard from


def test_a_whole_holder_failing_with_a_relay_reason_is_blamed_as_before():
    s = scheduler(max_uploads_supernode=0)
    s.piece_done("a", 0, T0)
    assert s.assign("b", 1, T0) == [Assignment(0, "a")]
    s.piece_failed("b", 0, "a", T0 + 1, STOPPED)   # a held it whole: no source to blame
    assert s.peers["b"].blacklist == {"a"} and s.peers["a"].errors == 1


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("chains", [False, True])
def test_narrowed_candidates_give_the_same_answers_with_relays(seed, chains):
    """While the supernode is full, assign() looks only at what free holders hold and
    what is being fetched: the same answers as with every piece a candidate."""
    rng = random.Random(seed)
    s = scheduler(peers=["p%d" % i for i in range(10)], on_supernode=range(24),
                  max_uploads_supernode=2, max_uploads_per_peer=2, max_holder_errors=2,
                  relay_chains=chains)
    now, relayed = T0, 0
    for step in range(500):
        now += 0.01
        peer_id = rng.choice(sorted(s.peers))
        peer = s.peers[peer_id]
        event = rng.random()
        if event < 0.5:
            want = rng.randint(1, 4)
            reference = copy.deepcopy(s)
            everything = [n for n in range(24) if n not in reference.peers[peer_id].held
                          and n not in reference.peers[peer_id].inflight]
            expected = reference._assign_from(reference.peers[peer_id], want, now, False, everything)
            got = s.assign(peer_id, want, now)
            assert got == expected, (seed, step)
            relayed += sum(1 for a in got if a.holder != SUPERNODE and a.piece not in s.peers[a.holder].held)
            for a in got:
                if a.holder == SUPERNODE:
                    s.supernode_started(peer_id, a.piece, now)
        elif event < 0.8 and peer.inflight:
            s.piece_done(peer_id, rng.choice(sorted(peer.inflight)), now)
        elif event < 0.9 and peer.inflight:
            num = rng.choice(sorted(peer.inflight))
            s.piece_failed(peer_id, num, peer.inflight[num][0], now, rng.choice([STOPPED, "digest mismatch"]))
    assert relayed > 10   # relays really were handed out


def test_no_one_else_is_sent_to_a_relay_that_stopped_until_its_fetch_ends():
    s = scheduler(peers=("a", "b", "c"), max_uploads_supernode=1)
    fetching_from_supernode(s, "a")
    assert s.assign("b", 1, T0) == [Assignment(0, "a")]
    s.piece_failed("b", 0, "a", T0 + 1, STOPPED)   # a's fetch of 0 is stuck, or slow
    assert s.assign("c", 1, T0 + 1) == []   # not sent to a: waits for a's copy, as before
    s.piece_failed("a", 0, SUPERNODE, T0 + 2, "transfer broke: timed out")
    fetching_from_supernode(s, "a", now=T0 + 2)   # a fetches it again: a relay again
    assert s.assign("c", 1, T0 + 2) == [Assignment(0, "a")]
