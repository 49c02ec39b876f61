"""bench/swarm_sim.py obeys physics: no host beats its own link, every host ends
with every piece, the supernode sends at least one copy, a piece held whole
before it moves on costs one piece time per hop, and cut-through does not; and
the flow solver shares links max-min fairly, a relayed flow never outrunning
its relay."""
from dataclasses import replace

import pytest

from bench.swarm_sim import Flow, Network, SimConfig, simulate
from dfly.protocol.messages import SUPERNODE

MiB = 1 << 20
SMALL = SimConfig(size=16 * MiB, piece_size=MiB)   # 1.34 s through one 100 Mbit/s link


def piece_time_s(cfg: SimConfig) -> float:
    return cfg.real_piece_size * 8 / (cfg.rate_mbit * 1e6)


def test_one_host_takes_the_time_of_the_file_through_its_link():
    r = simulate(replace(SMALL, hosts=1))
    assert SMALL.bound_s <= r.last_s <= SMALL.bound_s * 1.01 + 0.01
    assert r.supernode_copies == pytest.approx(1.0)


@pytest.mark.parametrize("hosts", [2, 5, 8])
@pytest.mark.parametrize("cut", [False, True])
def test_no_host_beats_its_link_and_every_host_ends_with_every_piece(hosts, cut):
    cfg = SimConfig(hosts=hosts, size=16 * MiB, piece_size=MiB, cut_through=cut)
    r = simulate(cfg)
    assert len(r.finished) == hosts
    assert min(r.finished.values()) >= cfg.bound_s
    assert all(held == list(range(cfg.pieces)) for held in r.held.values())
    assert r.supernode_copies >= 1.0
    assert r.supernode_done_s >= cfg.bound_s   # the supernode's link carried it all
    assert r.fetches["supernode"] + r.fetches["whole"] + r.fetches["relayed"] == hosts * cfg.pieces


def test_two_hosts_with_whole_pieces_take_at_least_one_piece_time_more():
    """The last piece to leave the supernode still has a hop to go, and it can
    start only once that piece is whole (or the supernode sent it twice)."""
    cfg = SimConfig(hosts=2, size=16 * MiB, piece_size=2 * MiB)
    r = simulate(cfg)
    assert r.last_s >= cfg.bound_s + piece_time_s(cfg)


def test_cut_through_passes_a_piece_on_before_it_is_whole():
    """One 4 MiB piece, two hosts: held whole first, the second host gets it a
    piece time after the first; relayed, a block (256 KiB) behind it."""
    whole = SimConfig(hosts=2, size=4 * MiB, piece_size=4 * MiB, origin_rate_mbit=1e6)   # cut at once
    r = simulate(whole)
    assert r.last_s >= 2 * whole.bound_s
    relayed = simulate(replace(whole, cut_through=True))
    assert relayed.fetches["relayed"] == 1
    block_s = 256 * 1024 * 8 / 100e6
    assert whole.bound_s <= relayed.last_s <= whole.bound_s + 2 * block_s


def test_a_run_is_the_same_for_the_same_seed():
    cfg = SimConfig(hosts=6, size=8 * MiB, piece_size=MiB, start_spread_s=0.2, seed=3)
    assert simulate(cfg).finished == simulate(cfg).finished


def _net(*flows):
    """Links of 100 bytes/s each way; a, b and d hold every piece whole, c none."""
    net = Network({(h, d): 100.0 for h in ("a", "b", "c", "d", SUPERNODE) for d in ("up", "down")},
                  block=10)
    for holder in ("a", "b", "d"):
        net.whole[holder] = set(range(10))
    for f in flows:
        net.start(f)
    net.solve()
    return net


def test_links_are_shared_max_min_fairly():
    into_c_from_a, into_c_from_b, into_d = Flow("a", "c", 0, 1000, 0.0), Flow("b", "c", 1, 1000, 0.0), \
        Flow("a", "d", 2, 1000, 0.0)
    _net(into_c_from_a, into_c_from_b, into_d)
    assert into_c_from_a.rate == into_c_from_b.rate == into_d.rate == 50.0
    alone = Flow("b", "d", 3, 1000, 0.0)
    three_into_c = [Flow(s, "c", n, 1000, 0.0) for n, s in enumerate(("a", "b", "d"))]
    _net(alone, *three_into_c)
    assert [f.rate for f in three_into_c] == pytest.approx([100 / 3] * 3)
    assert alone.rate == pytest.approx(200 / 3)   # b's uplink has what c's downlink left


def test_a_relayed_flow_waits_for_a_block_then_never_outruns_its_relay():
    upstream = Flow(SUPERNODE, "c", 0, 1000, 0.0)
    relayed = Flow("c", "b", 0, 1000, 0.0)   # c relays piece 0 as it arrives
    busy = [Flow(SUPERNODE, "a", 1, 1000, 0.0), Flow(SUPERNODE, "d", 2, 1000, 0.0)]
    net = _net(upstream, relayed, *busy)
    assert relayed.rate == 0.0 and upstream.rate == pytest.approx(100 / 3)   # no block yet
    net.advance(net.next_change_s())
    assert upstream.delivered == pytest.approx(10)   # the relay's first block is in
    net.solve()
    assert relayed.rate == pytest.approx(upstream.rate)
    net.advance(0.5)
    assert relayed.delivered <= upstream.delivered - 10 + 1e-6


def test_the_census_shows_the_fan_out_one_stream_to_each_host_passed_on_to_all():
    cfg = SimConfig(hosts=8, size=16 * MiB, piece_size=MiB, cut_through=True, census_s=(0.1,))
    [line] = simulate(cfg).census
    assert "in 8 streams to hosts 1/1/1/1/1/1/1/1 " in line
    assert "sending 7/7/7/7/7/7/7/7 " in line and "taking 8/8/8/8/8/8/8/8 " in line
    [line] = simulate(replace(cfg, fanout=0)).census   # before: 4 streams, 4 senders
    assert "in 4 streams to hosts 1/1/1/1 " in line and "sending 4/4/4/4 " in line
