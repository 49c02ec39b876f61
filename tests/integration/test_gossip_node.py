"""Gossip members on real UDP and TCP sockets on loopback (dfly/gossip/node.py)."""
import socket
import threading

import pytest

from dfly.gossip.node import MAX_TCP, GossipNode
from dfly.gossip.swim import ALIVE, DEAD, LEFT, SwimConfig
from dfly.gossip.wire import Keyring
from tests.helpers import wait_until

QUICK = SwimConfig(probe_interval_s=0.2, probe_timeout_s=0.1, suspicion_mult=3, gossip_interval_s=0.05,
                   push_pull_interval_s=2.0, gossip_to_dead_s=5.0)
KEY = Keyring([b"cluster key one".ljust(32, b"!")])
OTHER = Keyring([b"another cluster".ljust(32, b"?")])


@pytest.fixture
def start():
    nodes = []

    def make(name, join=None, keyring=KEY):
        node = GossipNode(name, ("127.0.0.1", 0), "127.0.0.1", {"v": 1}, QUICK, keyring)
        nodes.append(node)
        return node.start([join.address] if join is not None else [])
    yield make
    for node in nodes:
        if not node._stop.is_set():
            node.stop(leave=False)


def _states(node):
    return {m["name"]: m["state"] for m in node.members()}


def test_members_joining_one_seed_see_each_other_and_a_stopped_one_dies(start):
    seed = start("n0")
    nodes = [seed] + [start("n%d" % i, join=seed) for i in range(1, 5)]
    wait_until(lambda: all(_states(n) == {"n%d" % i: ALIVE for i in range(5)} for n in nodes),
               timeout=20, message="everyone alive everywhere")
    nodes[3].stop(leave=False)   # as if killed: no goodbye
    wait_until(lambda: all(_states(n)["n3"] == DEAD for n in nodes if n is not nodes[3]),
               timeout=20, message="the silent member is dead everywhere")
    nodes[4].stop(leave=True)
    wait_until(lambda: all(_states(n)["n4"] == LEFT for n in nodes[:3]), timeout=20,
               message="the leaver is marked left")


def test_members_with_another_key_never_see_each_other(start):
    seed = start("a0")
    stranger = start("b0", join=seed, keyring=OTHER)
    friend = start("a1", join=seed)
    wait_until(lambda: _states(seed).get("a1") == ALIVE and _states(friend).get("a0") == ALIVE, timeout=20,
               message="the friend joined")
    wait_until(lambda: seed.stats().get("dropped_unknown_key", 0) > 0, timeout=20,
               message="the stranger's join was dropped")
    assert set(_states(seed)) == {"a0", "a1"} and set(_states(friend)) == {"a0", "a1"}
    assert set(_states(stranger)) == {"b0"}


def test_junk_and_forged_packets_are_counted_and_change_nothing(start):
    seed = start("n0")
    other = start("n1", join=seed)
    wait_until(lambda: _states(seed).get("n1") == ALIVE, timeout=20, message="joined")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"DG1", b"\xff" * 2000, b"DG1" + b"\0" * 100):
            s.sendto(junk, seed.address)
    with socket.create_connection(seed.address, timeout=5) as s:   # a TCP frame that claims 2 GiB
        s.sendall(b"\x80\0\0\0")
    wait_until(lambda: seed.stats().get("dropped_malformed", 0) >= 3, timeout=10, message="junk counted")
    assert _states(seed) == {"n0": ALIVE, "n1": ALIVE} and seed._thread.is_alive()
    assert _states(other)["n0"] == ALIVE


def test_a_join_address_that_does_not_answer_leaves_the_member_alone_and_running(start):
    with socket.socket() as unused:   # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        nowhere = unused.getsockname()
    lonely = GossipNode("n0", ("127.0.0.1", 0), "127.0.0.1", {}, QUICK, KEY).start([nowhere])
    try:
        wait_until(lambda: lonely.stats().get("tcp_failed", 0) >= 1, timeout=10, message="the join failed")
        assert _states(lonely) == {"n0": ALIVE} and lonely._thread.is_alive()
    finally:
        lonely.stop()


def test_a_join_name_joins_every_address_it_resolves_to():
    from dfly.gossip.node import resolve_joins
    found = resolve_joins(["localhost:7999", "127.0.0.1:7999"])
    assert ("127.0.0.1", 7999) in found and len(found) == len(set(found))


def test_push_pull_runs_over_tls_and_a_plain_member_cannot_join_a_tls_one(start, tmp_path):
    import ssl

    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    nodes = [GossipNode(name, ("127.0.0.1", 0), "127.0.0.1", {}, QUICK, KEY, tls_client=client,
                        tls_server=server) for name in ("t0", "t1")]
    plain = GossipNode("p0", ("127.0.0.1", 0), "127.0.0.1", {}, QUICK, KEY)
    try:
        nodes[0].start([])
        nodes[1].start([nodes[0].address])
        wait_until(lambda: _states(nodes[0]).get("t1") == ALIVE and _states(nodes[1]).get("t0") == ALIVE,
                   timeout=20, message="joined over TLS")
        plain.start([nodes[0].address])
        wait_until(lambda: plain.stats().get("tcp_failed", 0) >= 1, timeout=10, message="plain join failed")
        assert "p0" not in _states(nodes[0]) and set(_states(plain)) == {"p0"}
    finally:
        for node in nodes + [plain]:
            node.stop(leave=False)


def _trickler(address, stop, source="127.0.0.2"):
    """A push-pull client from another loopback address that sends a frame header
    claiming 1000 bytes, then one byte every 0.2 s until `stop` (or the member hangs up)."""
    conn = socket.create_connection(address, timeout=5, source_address=(source, 0))
    conn.sendall(b"\0\0\x03\xe8")
    closed = threading.Event()

    def run():
        try:
            while not stop.wait(0.2):
                conn.sendall(b"x")
        except OSError:   # the member hung up (a reset)
            pass
        closed.set()
    threading.Thread(target=run, name="trickler", daemon=True).start()
    return conn, closed


@pytest.mark.time_limit(60)
def test_one_host_trickling_push_pulls_neither_holds_every_slot_nor_any_for_good(start):
    seed = GossipNode("n0", ("127.0.0.1", 0), "127.0.0.1", {"v": 1}, QUICK, KEY)
    seed.tcp_deadline_s = 2.0
    seed.start([])
    stop = threading.Event()
    held = []
    try:
        held = [_trickler(seed.address, stop) for _ in range(MAX_TCP)]
        friend = start("n1", join=seed)   # its join is a push-pull from 127.0.0.1
        wait_until(lambda: _states(seed).get("n1") == ALIVE and _states(friend).get("n0") == ALIVE,
                   timeout=10, message="the friend joined while another host trickled")
        wait_until(lambda: all(closed.is_set() for _, closed in held), timeout=15,
                   message="every trickling push-pull cut off at its deadline")
    finally:
        stop.set()
        for conn, _ in held:
            conn.close()
        seed.stop(leave=False)
