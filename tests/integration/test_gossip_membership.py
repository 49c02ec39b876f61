"""SWIM + Lifeguard membership (dfly/gossip/swim.py), driven on a simulated
network (tests/gossip_sim.py) in accelerated time, deterministic from a seed."""
import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfly.gossip.swim import ALIVE, DEAD, LEFT, PROFILES, SUSPECT, Swim
from tests.gossip_sim import SimNet, percentile, scaled

LAN, FAST = PROFILES["lan"], PROFILES["fast"]


def _detection_times(net, victims, wait_s):
    times = []
    for victim in victims:
        start = net.now
        net.crash(victim)
        net.run(wait_s)
        seen = net.dead_seen.get(victim, {})
        live = net.live()
        assert all(o in seen for o in live), "%s not known dead by all" % victim
        times += [seen[o] - start for o in live]
    return times


def test_members_joining_through_one_seed_all_know_each_other():
    net = SimNet(LAN, seed=1)
    net.cluster(20, settle_s=10)
    assert net.converged()
    assert {m["name"] for m in net.nodes["m5"].view()} == {"m%d" % i for i in range(20)}


def test_a_killed_member_is_known_dead_by_every_member_within_15_s_p99_at_50():
    net = SimNet(LAN, seed=2)
    net.cluster(50, settle_s=20)
    times = _detection_times(net, ["m11", "m23", "m37"], wait_s=25)
    assert percentile(times, 99) <= 15.0, times
    assert not net.false_deaths


def test_the_fast_profile_detects_a_death_within_6_s_p99_at_50():
    net = SimNet(FAST, seed=3)
    net.cluster(50, settle_s=15)
    times = _detection_times(net, ["m4", "m30"], wait_s=12)
    assert percentile(times, 99) <= 6.0, times


def test_a_joining_member_is_known_by_99_percent_within_3_s():
    net = SimNet(LAN, seed=4)
    net.cluster(50, settle_s=20)
    start = net.now
    net.add("newcomer", join=["m17"])
    net.run(3.0)
    seen = net.alive_seen.get("newcomer", {})
    assert sum(1 for o in net.live() if o != "newcomer" and seen.get(o, 1e9) - start <= 3.0) >= 0.99 * 50


def test_a_member_cut_off_briefly_refutes_its_suspicion_and_never_dies():
    net = SimNet(LAN, seed=5)
    net.cluster(10, settle_s=10)
    net.blocked = lambda a, b: "m3" in (a, b)
    net.run(3.0)
    assert any(net.state_of(o, "m3") == SUSPECT for o in net.live() if o != "m3")
    net.blocked = None
    assert net.run_until(net.converged, limit_s=10)
    assert net.nodes["m3"].me.incarnation > 0   # it refuted
    assert not net.false_deaths


def test_a_member_that_leaves_is_marked_left_at_once_not_dead():
    net = SimNet(LAN, seed=6)
    net.cluster(10, settle_s=10)
    net._route("m2", net.nodes["m2"].leave(net.now))
    net.run(2.0)
    assert all(net.state_of(o, "m2") == LEFT for o in net.live())
    assert not net.false_deaths


def test_a_partition_heals_by_push_pull_after_both_sides_declared_the_other_dead():
    net = SimNet(FAST, seed=7)
    net.cluster(10, settle_s=10)
    left = {"m%d" % i for i in range(5)}
    net.blocked = lambda a, b: (a in left) != (b in left)
    net.run(30)
    assert net.state_of("m0", "m9") == DEAD and net.state_of("m9", "m0") == DEAD
    net.blocked = None
    assert net.run_until(net.converged, limit_s=120), [
        (o, m, net.state_of(o, m)) for o in net.live() for m in net.live() if net.state_of(o, m) != ALIVE][:5]


@pytest.mark.parametrize("fault", ["freeze", "stall"])
def test_no_false_deaths_at_2_percent_loss_with_a_member_frozen_2_s_every_minute(fault):
    # At lan timings a 2 s pause is far below the 6.8 s minimum suspicion: SWIM's
    # suspicion alone nearly covers it (bench/gossip_sim.py, an hour without Lifeguard:
    # one false death when stalled, none when frozen).
    net = SimNet(LAN, seed=8, loss=0.02)
    net.cluster(50, settle_s=20)
    for _ in range(5):
        getattr(net, fault)("m7", 2.0)
        net.run(60)
    assert not net.false_deaths


@pytest.mark.parametrize("lifeguard", [True, False])
def test_lifeguard_keeps_a_member_stalled_2_s_every_minute_from_killing_healthy_ones(lifeguard):
    # lan timings / 5 (probe every 0.2 s, 1.2 s minimum suspicion at N = 20): the 2 s
    # stall outlasts a suspicion, as a 10 s stall would at lan timings. The stalled
    # member's probes time out while the acks and refutations wait in its socket
    # buffer. Without Lifeguard its lone accusations run out first and it declares
    # healthy members dead; with it they start at 6 x the minimum and its own probing
    # slows down. (The stalled member itself is declared dead either way: silent for
    # longer than the minimum, with many independent accusers, it is what a
    # suspicion is for.)
    net = SimNet(dataclasses.replace(scaled(LAN, 0.2), lifeguard=lifeguard), seed=14, loss=0.02)
    net.cluster(20, settle_s=20)
    net.false_deaths.clear()
    for _ in range(10):
        net.stall("m7", 2.0)
        net.run(60)
    healthy_deaths = [d for d in net.false_deaths if d[2] != "m7"]
    if lifeguard:
        assert not healthy_deaths
    else:
        assert healthy_deaths   # the run proves the refinements matter
        assert any(observer == "m7" for _, observer, _ in healthy_deaths)   # its own accusations


@pytest.mark.parametrize("lifeguard", [True, False])
def test_lifeguard_keeps_a_starved_member_from_killing_healthy_ones(lifeguard):
    # One member handles every packet 8 s late (a starved CPU): more than the
    # 6.8 s minimum suspicion at N = 50. Without Lifeguard its lone accusations
    # time out before the refutations reach it; with it they wait up to 6 x min
    # and its own probing slows down.
    net = SimNet(dataclasses.replace(LAN, lifeguard=lifeguard), seed=9, loss=0.02)
    net.cluster(50, settle_s=20)
    net.slow_down("m7", 8.0)
    net.run(60)
    healthy_deaths = [d for d in net.false_deaths if d[2] != "m7"]
    if lifeguard:
        assert not healthy_deaths
        assert net.nodes["m7"].awareness > 0
    else:
        assert healthy_deaths   # the run proves the refinements matter


def test_steady_state_traffic_is_under_1_kb_per_second_per_member_at_50():
    net = SimNet(LAN, seed=10, measure_bytes=True)
    net.cluster(50, settle_s=40)
    before = dict(net.bytes_sent)
    net.run(60)
    rates = [(net.bytes_sent[n] - before[n]) / 60.0 for n in net.live()]
    assert max(rates) <= 1024, max(rates)


def test_a_member_claiming_a_live_members_address_is_refused():
    net = SimNet(LAN, seed=11)
    net.cluster(5, settle_s=5)
    node = net.nodes["m0"]
    node.receive({"t": "gossip", "from": "x", "u": [
        {"k": ALIVE, "n": "impostor", "i": 0, "a": list(net.addr_of["m1"]), "m": {}}]}, ("sim", 99), net.now)
    assert "impostor" not in node.members
    assert node.counters["address_conflicts"] == 1


def test_false_news_of_ones_own_death_is_refuted_with_a_higher_incarnation():
    net = SimNet(LAN, seed=12)
    net.cluster(5, settle_s=5)
    node = net.nodes["m1"]
    node.receive({"t": "gossip", "from": "m0", "u": [{"k": DEAD, "n": "m1", "i": 0, "by": "m0"}]},
                 net.addr_of["m0"], net.now)
    assert node.me.incarnation == 1 and node.me.state == ALIVE
    net.run(5)
    assert net.converged()


_values = st.recursive(st.none() | st.booleans() | st.integers(-2, 2 ** 40) | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                   max_size=4), max_leaves=12)
_messages = st.fixed_dictionaries({"t": st.sampled_from(["ping", "ping-req", "ack", "nack", "gossip", "sync",
                                                         "sync-reply", "x"]),
                                   "from": st.sampled_from(["m0", "m1", "zz"])},
                                  optional={"seq": _values, "to": _values, "target": _values, "u": _values,
                                            "members": _values, "addr": _values})


@settings(max_examples=120, deadline=None)
@given(_messages)
def test_malformed_messages_never_crash_a_member(msg):
    node = Swim("m0", ("sim", 1), {}, LAN, random.Random(1), 0.0)
    hello = {"k": ALIVE, "n": "m1", "i": 0, "a": ["sim", 2], "m": {}}
    node.receive({"t": "gossip", "from": "m1", "u": [hello]}, ("sim", 2), 0.0)
    node.receive(msg, ("sim", 2), 1.0)
    node.tick(node.next_wakeup())
    assert node.me.state == ALIVE


@pytest.mark.time_limit(60)
def test_a_dead_member_is_forgotten_after_the_reclaim_time_without_spinning():
    # The reclaim check and the next wakeup once differed by a float rounding: the
    # member was never forgotten and the wakeup stayed in the past (a busy loop).
    net = SimNet(LAN, seed=13)
    net.cluster(10, settle_s=10)
    net.crash("m1")
    net.run(LAN.dead_reclaim_s + 60)
    assert all("m1" not in net.nodes[o].members for o in net.live())
    assert all(net.nodes[o].next_wakeup() > net.now - 1 for o in net.live())


@pytest.mark.parametrize("lifeguard", [True, False])
def test_a_probe_of_a_suspect_carries_the_suspicion_only_with_lifeguards_buddy_system(lifeguard):
    # Lifeguard's third part: a member pinging one it suspects puts the suspicion
    # first, so the suspect can refute even if the gossip about it was lost. Off, it
    # is plain SWIM: the suspect hears of it only by gossip.
    node = Swim("m0", ("sim", 1), {}, dataclasses.replace(LAN, lifeguard=lifeguard), random.Random(1), 0.0)
    news = [{"k": ALIVE, "n": "m1", "i": 0, "a": ["sim", 2], "m": {}},
            {"k": SUSPECT, "n": "m1", "i": 0, "by": "m2"}]
    node.receive({"t": "gossip", "from": "m1", "u": news}, ("sim", 2), 0.0)
    pings, now = [], 0.0
    while not pings and now < 30:
        now = node.next_wakeup()
        pings = [s.msg for s in node.tick(now) if s.msg["t"] == "ping"]
    assert pings, "no probe of m1"
    buddy = {"k": SUSPECT, "n": "m1", "i": 0, "by": "m0"}
    assert (pings[0]["u"][:1] == [buddy]) is lifeguard
