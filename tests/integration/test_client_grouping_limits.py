"""With --client-ipv6-prefix 64 the per-client limits count an IPv6 host once,
by its /64, whatever address of it a request comes from: a listener's connections, a supernode's new tasks a
minute and its share of the source fetches, the gossip port's push-pulls; and
the setting reaches every uploader (a get's, its seeder's, a daemon's). Only ::1 is ours on loopback, so
the other clients here are addresses of the documentation range (RFC 3849)
handed to the policy as strings: nothing is ever sent to them (the peers
registered advertise 127.0.0.1, believed with --trust-peer-hosts)."""
import json
import os
import socket
import threading

import pytest
from helpers import content, wait_until

from dfly.errors import TooManyRequests
from dfly.httpd import Listener
from dfly.peer import seeder


def _counts_each_slash_64_as_one_client(take, give):
    """`take` a slot (False: its client has 2 already) and `give` it back, as a server
    does for each connection (or exchange) of a client host."""
    assert take("2001:db8:1:2::a") and take("2001:db8:1:2::b")
    assert not take("2001:db8:1:2::c")   # a third address of one host
    assert take("2001:db8:1:3::a")        # another /64: another client
    assert take("::ffff:192.0.2.1") and take("192.0.2.1")
    assert not take("::ffff:192.0.2.1")   # mapped or not: one IPv4 client
    give("2001:db8:1:2::a")
    assert take("2001:db8:1:2::d")


def test_a_listener_counts_the_connections_of_one_ipv6_slash_64_as_one_client():
    listener = Listener("test-http", ("127.0.0.1", 0), None, max_connections_per_client=2,
                        client_ipv6_prefix=64)
    server = listener.server   # not started: the count is all this test asks of it
    try:
        _counts_each_slash_64_as_one_client(server._client_slot, server._client_done)
    finally:
        listener.stop()


def _register(supernode, origin, name: str, client_host: str) -> dict:
    body = {"url": origin.url(name), "peer": {"id": "p-" + name, "host": "127.0.0.1", "port": 9}}
    return supernode.service.register(body, client_host)


def test_new_tasks_of_one_ipv6_host_share_one_budget_whatever_address_it_registers_from(
        origin, supernode_factory):
    supernode = supernode_factory(max_new_tasks_per_client=1, trust_peer_hosts=True,
                                  client_ipv6_prefix=64)
    for i in range(5):
        origin.add("t%d" % i, content(1000, seed=i))
    _register(supernode, origin, "t0", "2001:db8:1:2::a")
    with pytest.raises(TooManyRequests, match="2001:db8:1:2::/64"):
        _register(supernode, origin, "t1", "2001:db8:1:2::b")
    _register(supernode, origin, "t2", "2001:db8:1:3::a")
    _register(supernode, origin, "t3", "127.0.0.2")   # IPv4: one client per address
    _register(supernode, origin, "t4", "127.0.0.3")


@pytest.mark.time_limit(30)
def test_the_source_fetches_of_one_ipv6_host_share_its_one_place_in_the_pool(origin, supernode_factory):
    supernode = supernode_factory(max_source_fetches=3, max_source_fetches_per_client=1,
                                  trust_peer_hosts=True, client_ipv6_prefix=64)
    hold = threading.Event()
    for name in ("slow0", "slow1", "quick"):
        origin.add(name, content(1000, seed=len(name)))
    for name in ("slow0", "slow1"):
        origin.fault(name, hold=hold)   # a source that does not answer for now
    try:
        slow = [_register(supernode, origin, "slow0", "2001:db8:1:2::a")["task_id"],
                _register(supernode, origin, "slow1", "2001:db8:1:2::b")["task_id"]]
        quick = _register(supernode, origin, "quick", "2001:db8:1:3::a")["task_id"]
        wait_until(lambda: supernode.service.task_status(quick)["state"] == "done", timeout=10,
                   message="another host's source fetched while the first host's hangs")
        wait_until(lambda: origin.arrived("slow0") == 1, timeout=10, message="the first is asked")
        assert origin.arrived("slow1") == 0   # the second address's fetch waits its turn
    finally:
        hold.set()
    wait_until(lambda: all(supernode.service.task_status(t)["state"] == "done" for t in slow),
               timeout=20, message="the waiting fetch ran once the first was done")


def test_by_default_each_ipv6_address_is_a_client_of_its_own(origin, supernode_factory, daemons):
    supernode = supernode_factory(max_new_tasks_per_client=1, trust_peer_hosts=True,
                                  max_connections_per_client=1)
    for i in range(2):
        origin.add("t%d" % i, content(1000, seed=i))
    _register(supernode, origin, "t0", "2001:db8:1:2::a")
    _register(supernode, origin, "t1", "2001:db8:1:2::b")
    daemon = daemons.start(max_connections_per_client=1)
    for server in (supernode.listener.server, daemon.listener.server):
        assert server._client_slot("2001:db8:1:2::a") and server._client_slot("2001:db8:1:2::b")


def test_the_gossip_port_counts_the_push_pulls_of_one_ipv6_slash_64_as_one_host(supernode_factory, tmp_path):
    key = tmp_path / "gossip.key"
    key.write_text("a cluster key of more than sixteen characters\n")
    supernode = supernode_factory(gossip=True, gossip_key_file=str(key), gossip_listen="127.0.0.1:0",
                                  client_ipv6_prefix=64)
    node = supernode.gossip   # its push-pull slots (2 a host), taken as its accept loop would
    _counts_each_slash_64_as_one_client(node._take_slot, node._give_slot)


class _SpareHere:
    """A seeder spare that is this process: it keeps the spec and a copy of the socket."""
    pid = os.getpid()

    def hand_over(self, spec: dict, fd: int) -> bool:
        self.spec = json.loads(json.dumps(spec))   # as it travels
        self.sock = socket.socket(fileno=os.dup(fd))
        return True


@pytest.mark.time_limit(30)
def test_a_get_and_the_seeder_it_hands_over_to_count_ipv6_clients_by_its_prefix(
        origin, supernode, client_factory, downloads, tmp_path):
    src = origin.add("f.bin", content(1000, seed=7))
    client = client_factory([supernode.address], seed_for_s=30, client_ipv6_prefix=64)
    client.download(src.url, str(downloads / "f.bin"))
    listener, uploader, tasks = client.detach_listener()
    spare = _SpareHere()
    seeder.detach(listener, uploader, tasks, client.peer_id, 30, str(tmp_path / "seeder-data"),
                  spare=spare)
    served = seeder._listener(spare.spec, uploader, spare.sock, None)   # not started
    try:
        assert listener.server.client_ipv6_prefix == served.server.client_ipv6_prefix == 64
    finally:
        served.stop()


def test_a_daemon_gives_its_prefix_to_its_own_uploader_too(daemons):
    daemon = daemons.start(client_ipv6_prefix=64)
    assert daemon.listener.server.client_ipv6_prefix == daemon.p2p.config.client_ipv6_prefix == 64


def test_a_supernode_gives_its_prefix_to_its_uploader_for_an_upstream_cluster(supernode_factory, tmp_path):
    upstream = supernode_factory(data_dir=tmp_path / "region-a")
    below = supernode_factory(data_dir=tmp_path / "region-b", upstream_supernode=[upstream.address],
                              upstream_upload_listen="127.0.0.1:0", client_ipv6_prefix=64)
    assert below.service.upstream.client.config.client_ipv6_prefix == 64
