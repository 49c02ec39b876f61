"""The scheduler's locality rule: among holders that may serve a piece, the one
sharing the longest location prefix with the requester wins, without changing who
is eligible (load limits, blacklists, address families, supernode slots)."""
import pytest

from dfly.protocol.location import parse_location
from dfly.supernode.scheduler import SUPERNODE, Assignment, SchedulerConfig, TaskScheduler

T0 = 1000.0
ZONE_A = ("eu", "a", "r1")
ZONE_A_OTHER_RACK = ("eu", "a", "r2")
ZONE_B = ("eu", "b", "r1")


def swarm(locations, **config) -> TaskScheduler:
    """Peers named after their list position, with these locations; piece 0 on the supernode."""
    config.setdefault("cut_through", False)   # whole-piece planning: relays in test_scheduler_relays.py
    s = TaskScheduler(SchedulerConfig(**config))
    s.piece_available(0)
    for i, (peer_id, location) in enumerate(locations.items()):
        s.peer_joined(peer_id, ("10.0.0.%d" % (i + 1), 9000 + i), T0, location=location)
    return s


def test_a_requester_in_zone_a_fetches_from_the_holder_in_zone_a_over_one_in_zone_b():
    # "a-holder" sorts after "0-b-holder": without locality the zone-b holder (equal load) wins.
    s = swarm({"req": ZONE_A, "0-b-holder": ZONE_B, "a-holder": ZONE_A})
    s.piece_done("0-b-holder", 0, T0)
    s.piece_done("a-holder", 0, T0)
    assert s.assign("req", 1, T0) == [Assignment(0, "a-holder")]


def test_the_same_rack_wins_over_the_same_zone():
    s = swarm({"req": ZONE_A, "0-other-rack": ZONE_A_OTHER_RACK, "same-rack": ZONE_A})
    s.piece_done("0-other-rack", 0, T0)
    s.piece_done("same-rack", 0, T0)
    assert s.assign("req", 1, T0) == [Assignment(0, "same-rack")]


def test_a_near_holder_wins_even_when_a_far_one_is_less_loaded():
    s = swarm({"req": ZONE_A, "busy-near": ZONE_A, "idle-far": ZONE_B, "other": ZONE_A})
    s.piece_available(1)
    for holder in ("busy-near", "idle-far"):
        s.piece_done(holder, 0, T0)
    s.piece_done("busy-near", 1, T0)
    assert s.assign("other", 1, T0) == [Assignment(1, "busy-near")]   # the rarer piece
    assert (s.upload_load("busy-near"), s.upload_load("idle-far")) == (1, 0)
    assert s.assign("req", 1, T0, sequential=True) == [Assignment(0, "busy-near")]


def test_a_requester_falls_back_across_zones_when_no_near_holder_has_a_free_slot():
    s = swarm({"req": ZONE_A, "a-near": ZONE_A, "b-far": ZONE_B, "x1": ()},
              max_uploads_per_peer=1)
    for holder in ("a-near", "b-far"):
        s.piece_done(holder, 0, T0)
    assert s.assign("x1", 1, T0) == [Assignment(0, "a-near")]   # a-near is now full
    assert s.assign("req", 1, T0) == [Assignment(0, "b-far")]


def test_a_requester_waits_for_a_copy_coming_into_its_zone_rather_than_fetch_across():
    s = swarm({"req": ZONE_A, "near": ZONE_A_OTHER_RACK, "far": ZONE_B})
    s.piece_done("far", 0, T0)
    assert s.assign("near", 1, T0) == [Assignment(0, "far")]   # the one crossing
    assert s.assign("req", 1, T0 + 1) == []
    s.piece_done("near", 0, T0 + 2)
    assert s.assign("req", 1, T0 + 2) == [Assignment(0, "near")]


def test_a_copy_coming_into_the_zone_that_stalled_is_not_waited_for():
    s = swarm({"req": ZONE_A, "near": ZONE_A, "far": ZONE_B}, piece_stall_s=15.0)
    s.piece_done("far", 0, T0)
    assert s.assign("near", 1, T0) == [Assignment(0, "far")]
    assert s.assign("req", 1, T0 + 16) == [Assignment(0, "far")]


def test_the_supernode_copy_coming_into_the_zone_is_waited_for_as_long_as_its_stream_goes_on():
    s = swarm({"near": ZONE_A, "req": ZONE_A, "far": ZONE_B}, piece_stall_s=15.0)
    assert s.assign("near", 1, T0) == [Assignment(0, SUPERNODE)]
    s.supernode_started("near", 0, T0)
    s.piece_done("far", 0, T0)
    assert s.assign("req", 1, T0 + 30) == []                   # a slow link: no stall
    s.supernode_send_failed("near", 0)
    assert s.assign("req", 1, T0 + 30) == [Assignment(0, "far")]


def test_the_supernode_copy_coming_into_the_zone_is_waited_for_too():
    s = swarm({"near": ZONE_A, "req": ZONE_A, "far": ZONE_B})
    assert s.assign("near", 1, T0) == [Assignment(0, SUPERNODE)]
    s.piece_done("far", 0, T0)   # (it got its copy elsewhere)
    assert s.assign("req", 1, T0 + 1) == []


def test_bytes_are_counted_within_or_across_zones_by_the_ends_of_each_fetch():
    s = swarm({"req": ZONE_A, "far": ZONE_B, "near": ZONE_A_OTHER_RACK, "anon": ()})
    s.piece_available(1)
    s.piece_done("far", 0, T0)
    s.piece_done("near", 1, T0)
    got = s.assign("req", 2, T0, sequential=True)
    assert got == [Assignment(0, "far"), Assignment(1, "near")]
    s.peer_left("far")   # a holder gone before the report: its zone is still known
    assert (s.fetched_within_zone("req", 0), s.fetched_within_zone("req", 1)) == (False, True)
    s.piece_done("req", 0, T0)
    assert s.fetched_within_zone("req", 0) is None   # done: forgotten
    s2 = swarm({"anon": (), "near": ZONE_A})
    s2.piece_done("near", 0, T0)
    assert s2.assign("anon", 1, T0) == [Assignment(0, "near")]
    assert s2.fetched_within_zone("anon", 0) is None   # no location: in neither count


def test_locality_never_picks_a_blacklisted_or_bad_holder():
    s = swarm({"req": ZONE_A, "near": ZONE_A, "far": ZONE_B})
    s.piece_done("near", 0, T0)
    s.piece_done("far", 0, T0)
    s.piece_failed("req", 5, "near", T0)   # a report the scheduler never asked for: only a blacklist
    assert s.assign("req", 1, T0) == [Assignment(0, "far")]


def test_locality_never_sends_a_requester_to_the_supernode_while_a_far_peer_is_free():
    s = swarm({"req": ZONE_A, "far": ZONE_B})
    s.piece_done("far", 0, T0)
    assert s.assign("req", 1, T0) == [Assignment(0, "far")]


def test_without_locations_or_with_the_rule_off_the_least_loaded_holder_wins_as_before():
    for locations, config in (({"req": (), "0-b-holder": ZONE_B, "a-holder": ZONE_A}, {}),
                              ({"req": ZONE_A, "0-b-holder": ZONE_B, "a-holder": ZONE_A},
                               {"prefer_near": False})):
        s = swarm(locations, **config)
        s.piece_done("0-b-holder", 0, T0)
        s.piece_done("a-holder", 0, T0)
        assert s.assign("req", 1, T0) == [Assignment(0, "0-b-holder")]


def test_a_peer_that_registers_again_takes_its_new_location():
    s = swarm({"req": ZONE_A, "holder": ZONE_B, "0-other": ZONE_A_OTHER_RACK})
    s.peer_joined("holder", ("10.0.0.2", 9001), T0, location=ZONE_A)
    s.piece_done("holder", 0, T0)
    s.piece_done("0-other", 0, T0)
    assert s.assign("req", 1, T0) == [Assignment(0, "holder")]


def test_the_supernode_still_serves_a_piece_no_peer_holds():
    s = swarm({"req": ZONE_A})
    assert s.assign("req", 1, T0) == [Assignment(0, SUPERNODE)]


# the labels ------------------------------------------------------------------------------

def test_a_location_parses_into_labels_widest_first():
    assert parse_location("eu-west/zone-a/rack.7") == ("eu-west", "zone-a", "rack.7")
    assert parse_location("") == ()
    assert parse_location(None) == ()
    assert parse_location("a/b/c/d") == ("a", "b", "c", "d")   # MAX_LABELS labels, inclusive


@pytest.mark.parametrize("text", ["a//b", "/a", "a/", "a b", "a/b/c/d/e", "x" * 33, "a/../b",
                                  ".", "é", "a\nb"])
def test_a_malformed_location_is_refused_with_the_rule(text):
    with pytest.raises(ValueError, match="labels joined by '/'"):
        parse_location(text)



# Edges a mutation run of the scheduler's location index found untested --------------------

def test_a_peer_that_moves_is_no_longer_near_its_old_place_at_any_depth():
    # Neither holder is near req now: the first by id wins, unless "z-mover" is
    # still indexed in req's region, zone or rack.
    s = swarm({"req": ZONE_A, "z-mover": ZONE_A, "0-far": ("us", "b", "r1")})
    s.peer_joined("z-mover", ("10.0.0.2", 9001), T0, location=("ap", "x", "r9"))
    for holder in ("z-mover", "0-far"):
        s.piece_done(holder, 0, T0)
    assert s.assign("req", 1, T0) == [Assignment(0, "0-far")]
    s2 = swarm({"req": ZONE_A, "0-mover": ZONE_A, "z-near": ZONE_A, "far": ZONE_B})
    s2.peer_joined("0-mover", ("10.0.0.2", 9001), T0, location=("ap", "x", "r9"))
    for holder in ("0-mover", "z-near", "far"):
        s2.piece_done(holder, 0, T0)
    assert s2.assign("req", 1, T0) == [Assignment(0, "z-near")]   # its rack, kept when 0-mover left it


def test_a_peer_that_left_and_came_back_elsewhere_is_judged_where_it_is_now():
    s = swarm({"req": ZONE_A, "z-back": ZONE_A, "b-far": ("us", "b", "r1")})
    s.peer_left("z-back")
    s.peer_joined("z-back", ("10.0.0.2", 9001), T0, location=("ap", "x", "r9"))
    s.piece_done("b-far", 0, T0)
    s.piece_done("z-back", 0, T0)
    # neither is near: equal load, the first by id, as without locations
    assert s.assign("req", 1, T0) == [Assignment(0, "b-far")]


def test_the_same_region_wins_over_another_region():
    s = swarm({"req": ZONE_A, "0-other-region": ("us", "b", "r1"), "same-region": ZONE_B})
    for holder in ("0-other-region", "same-region"):
        s.piece_done(holder, 0, T0)
    assert s.assign("req", 1, T0) == [Assignment(0, "same-region")]


def test_a_holder_in_the_requesters_zone_is_used_even_while_another_copy_comes_into_it():
    s = swarm({"req": ZONE_A, "x": ZONE_A, "far": ZONE_B, "h": ZONE_A_OTHER_RACK})
    s.piece_done("far", 0, T0)
    assert s.assign("x", 1, T0) == [Assignment(0, "far")]   # a copy coming into zone a
    s.piece_done("h", 0, T0)                                # (h got its copy elsewhere)
    assert s.assign("req", 1, T0 + 1) == [Assignment(0, "h")]


def test_with_the_rule_off_no_copy_coming_into_the_zone_is_waited_for():
    s = swarm({"req": ZONE_A, "x": ZONE_A, "far": ZONE_B}, prefer_near=False)
    s.piece_done("far", 0, T0)
    assert s.assign("x", 1, T0) == [Assignment(0, "far")]
    assert s.assign("req", 1, T0 + 1) == [Assignment(0, "far")]


def test_a_copy_coming_into_the_zone_is_waited_for_up_to_piece_stall_s_itself():
    s = swarm({"req": ZONE_A, "near": ZONE_A, "far": ZONE_B}, piece_stall_s=15.0)
    s.piece_done("far", 0, T0)
    assert s.assign("near", 1, T0) == [Assignment(0, "far")]
    assert s.assign("req", 1, T0 + 15) == []


def test_a_copy_into_the_zone_whose_fetcher_left_is_not_waited_for():
    s = swarm({"req": ZONE_A, "x1": ZONE_A, "far": ZONE_B})
    s.piece_done("far", 0, T0)
    assert s.assign("x1", 1, T0) == [Assignment(0, "far")]
    s.peer_left("x1")                                       # its fetch ends with it: nothing comes
    assert s.assign("req", 1, T0 + 1) == [Assignment(0, "far")]


def test_a_piece_only_peers_hold_stays_offered_when_one_holders_copy_is_found_bad():
    s = TaskScheduler(SchedulerConfig())   # the supernode does not have piece 0
    for i, peer_id in enumerate(("a", "b", "c")):
        s.peer_joined(peer_id, ("10.0.0.%d" % (i + 1), 9000), T0)
    s.piece_done("a", 0, T0)
    s.piece_done("b", 0, T0)
    s.piece_lost("a", 0)
    assert s.assign("c", 1, T0) == [Assignment(0, "b")]
