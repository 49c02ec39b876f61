"""The fan-out in the scheduler (pure): with cut-through, the supernode feeds a
different piece to each peer at once (up to `fanout` peers), each such peer
relays its piece to all the others, and a stream from such a relay holds none
of the requester's download slots, so every uplink is busy from the start
(bench/swarm_sim.py, 16 hosts: the last host at 6.20 s instead of 6.61 s)."""
from dfly.supernode.scheduler import SUPERNODE, Assignment, SchedulerConfig, TaskScheduler

T0 = 1000.0


def swarm(hosts: int, pieces: int = 64, **config) -> TaskScheduler:
    s = TaskScheduler(SchedulerConfig(**config))
    for num in range(pieces):
        s.piece_available(num)
    for i in range(hosts):
        s.peer_joined("h%02d" % i, ("10.0.0.%d" % (i + 1), 9000), T0)
    return s


def feed_everyone(s: TaskScheduler, want: int = 4) -> dict:
    """Each peer asks in turn, as at a swarm's start; returns peer -> its orders."""
    got = {}
    for peer_id in sorted(s.peers):
        got[peer_id] = s.assign(peer_id, want, T0)
        for a in got[peer_id]:
            if a.holder == SUPERNODE:
                s.supernode_started(peer_id, a.piece, T0)
    return got


def from_supernode(got: dict) -> dict:
    return {peer_id: [a.piece for a in orders if a.holder == SUPERNODE]
            for peer_id, orders in got.items()}


def test_the_supernode_feeds_every_peer_its_own_piece_at_once():
    """Before, its 4 slots fed 4 peers, and only those 4 had anything to pass on."""
    s = swarm(16)
    fed = from_supernode(feed_everyone(s))
    assert all(len(pieces) == 1 for pieces in fed.values())   # one each, not 4 to the first
    assert len({pieces[0] for pieces in fed.values()}) == 16  # 16 different pieces
    assert s.upload_load(SUPERNODE) == 16


def test_each_fed_peer_relays_its_piece_to_every_other_peer():
    s = swarm(16)
    feed_everyone(s, want=1)
    got = s.assign("h00", 16, T0 + 1)
    # one stream from each of the 15 others (the peer has its own from the supernode)
    assert sorted(a.holder for a in got) == sorted("h%02d" % i for i in range(1, 16))
    for peer_id in sorted(s.peers)[1:]:
        got = s.assign(peer_id, 16, T0 + 1)
        assert len(got) == 15 and all(s.frees_slot(peer_id, a.piece) for a in got)
    assert all(s.upload_load(p) == 15 for p in s.peers)   # past max_uploads_per_peer (4)


def test_a_stream_from_a_fed_relay_holds_no_slot_but_a_whole_copy_or_its_relay_does():
    s = swarm(3, pieces=1, max_uploads_per_peer=1)
    assert s.assign("h00", 1, T0) == [Assignment(0, SUPERNODE)]
    s.supernode_started("h00", 0, T0)
    assert s.assign("h01", 1, T0) == [Assignment(0, "h00")]
    assert s.frees_slot("h01", 0) and not s.frees_slot("h00", 0)   # a stream; the supernode's
    s.piece_available(1)
    s.piece_done("h02", 1, T0)
    assert s.assign("h01", 1, T0) == [Assignment(1, "h02")]
    assert not s.frees_slot("h01", 1)   # a whole copy goes at the link's pace: a slot
    s.peers["h00"].blacklist.add("h02")
    assert s.assign("h00", 1, T0) == [Assignment(1, "h01")]
    assert not s.frees_slot("h00", 1)   # a relay fed by a whole copy is no stream either


def test_a_fed_peer_takes_another_supernode_piece_once_its_own_is_sent():
    s = swarm(16)
    feed_everyone(s)
    assert from_supernode({"h00": s.assign("h00", 1, T0 + 1)}) == {"h00": []}
    [own] = [n for n, (holder, _) in s.peers["h00"].inflight.items() if holder == SUPERNODE]
    s.supernode_sent("h00", own, T0 + 2)
    [order] = s.assign("h00", 1, T0 + 2)
    assert order.holder == SUPERNODE


def test_small_swarms_share_the_supernodes_slots_and_a_lone_peer_takes_them_all():
    s = swarm(1)
    assert [a.holder for a in s.assign("h00", 4, T0)] == [SUPERNODE] * 4
    s = swarm(2)
    assert [a.holder for a in s.assign("h00", 4, T0)] == [SUPERNODE] * 2
    assert [a.holder for a in s.assign("h01", 4, T0)][:2] == [SUPERNODE] * 2


def test_the_fanout_is_off_past_fanout_peers_without_cut_through_or_when_zero():
    """Past `fanout` peers some would get no stream of their own, and those fed could
    not pass theirs to everyone: bench/swarm_sim.py, 24 and 32 hosts, 7.6-7.7 s
    with the fan-out capped at 16 peers, 6.6 s without it."""
    s = swarm(16)
    feed_everyone(s)
    assert s.upload_load(SUPERNODE) == 16
    for hosts, config in ((17, {}), (16, {"cut_through": False}), (16, {"fanout": 0}),
                          (8, {"fanout": 4})):
        s = swarm(hosts, **config)
        fed = from_supernode(feed_everyone(s))
        assert s.upload_load(SUPERNODE) == 4 and sum(map(len, fed.values())) == 4


def test_a_fed_relay_takes_as_many_streams_as_the_supernode_has_going():
    """With fewer pieces left to stream than peers (64 pieces, 12 peers: the last 4),
    a relay passing its piece to every other peer would go at its uplink's pace,
    not the supernode's: it takes as many streams as the supernode sends (at
    least max_uploads_per_peer), and the others wait for a whole copy."""
    s = swarm(12, pieces=2)
    feed_everyone(s, want=1)   # two pieces: two peers fed, the others relayed
    fed = [p for p in sorted(s.peers) if s.peers[p].from_supernode]
    assert len(fed) == 2
    assert all(s.upload_load(p) == 4 for p in fed)   # not 11 each
    s = swarm(12, pieces=12)
    feed_everyone(s, want=1)
    got = s.assign("h00", 16, T0 + 1)
    assert len(got) == 11   # with every peer fed: a stream from each of the others



def test_in_the_final_round_a_stream_is_passed_on_once_more_when_its_relay_is_full():
    """The last pieces, fewer than the peers, reach everyone through a few uplinks:
    in the final round (every piece on its way to a peer) a peer relaying a fed
    relay's stream may pass it on (one hop more, no further), so more uplinks
    carry them (bench/swarm_sim.py, 4 MiB pieces, 14-15 hosts: 8.2-8.3 s without,
    7.0-7.2 s with; at 2 and 4 MiB never slower than before the fan-out)."""
    for count in (2, None, 3):   # the file's pieces: 2 (both on their way), unknown, 3
        s = TaskScheduler(SchedulerConfig())
        for num in range(2):
            s.piece_available(num, count)
        for i in range(12):
            s.peer_joined("h%02d" % i, ("10.0.0.%d" % (i + 1), 9000), T0)
        first = [s.assign("h%02d" % i, 1, T0) for i in range(10)]
        for i in (0, 1):
            assert first[i][0].holder == SUPERNODE
            s.supernode_started("h%02d" % i, first[i][0].piece, T0)
        first = [s.assign("h%02d" % i, 1, T0) for i in range(2, 10)]
        relays = {"h%02d" % i for i in range(2, 10)}
        assert all(orders[0].holder in ("h00", "h01") for orders in first)   # 4 each: full
        got = s.assign("h10", 1, T0 + 1)
        if count != 2:
            assert got == []   # the supernode has more to stream: wait for a whole copy
            continue
        [order] = got
        assert order.holder in relays and s.frees_slot("h10", order.piece)
        s.peers["h11"].blacklist |= relays   # h10 alone could relay to it: a third hop, no
        assert s.assign("h11", 1, T0 + 1) == []
