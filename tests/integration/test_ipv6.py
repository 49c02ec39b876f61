"""IPv6 and dual-stack on the loopback: listeners on ::1 and on `::` (every address of
both families), peers that reach the supernode over IPv6 and so advertise IPv6, IPv4
and IPv6 peers in one swarm, and addresses the host cannot listen on."""
import errno
import http.client
import json
import os
import socket

import pytest
from helpers import MiB, content, wait_until
from origin import Origin

from dfly.errors import BadRequest, CannotListen
from dfly.httpd import Listener
from dfly.peer.daemon_client import PROVEN, DaemonClient
from dfly.peer.piece_client import PieceFailed, PieceFetcher
from dfly.peer.seeder import detach
from dfly.protocol.address import parse_address
from dfly.protocol.handoff import HandoffRequest
from dfly.protocol.messages import PieceOrder, RegisterRequest, ScheduleRequest
from dfly.protocol.task import task_id
from dfly.supernode.client import SupernodeClient


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _has_ipv6_loopback(), reason="this host has no IPv6 loopback")


@pytest.fixture
def origin6(tmp_path):
    server = Origin(str(tmp_path / "origin6"), host="::1")
    yield server
    server.stop()


def _port(address: str) -> int:
    return parse_address(address)[1]


def test_a_swarm_on_the_ipv6_loopback_goes_peer_to_peer(supernode_factory, client_factory,
                                                         origin6, downloads):
    supernode = supernode_factory(listen="[::1]:0")
    assert supernode.address.startswith("[::1]:")
    src = origin6.add("f.bin", content(9 * MiB, seed=61))
    first = client_factory([supernode.address], upload_listen="[::1]:0", seed_for_s=60)
    first.download(src.url, str(downloads / "a"), digest=src.digest)
    second = client_factory([supernode.address], upload_listen="[::1]:0")
    result = second.download(src.url, str(downloads / "b"), digest=src.digest)
    assert result.via == "p2p" and result.bytes_from_peers > 0
    assert origin6.body_bytes("f.bin") == src.size


@pytest.mark.time_limit(45)
def test_a_dual_stack_supernode_serves_ipv4_and_ipv6_peers_in_one_swarm(
        supernode_factory, client_factory, origin, downloads):
    supernode = supernode_factory(listen="[::]:0")
    port = _port(supernode.address)
    via_v4, via_v6 = "127.0.0.1:%d" % port, "[::1]:%d" % port
    src = origin.add("f.bin", content(9 * MiB, seed=62))
    first_v4 = client_factory([via_v4], seed_for_s=60)
    first_v4.download(src.url, str(downloads / "a"), digest=src.digest)
    # The IPv6 peer leaves its uploader on the wildcard, as users do: it must listen
    # on IPv6, the family of the address it advertises, not on 0.0.0.0 (IPv4 only).
    first_v6 = client_factory([via_v6], upload_listen="0.0.0.0:0", seed_for_s=60)
    alone = first_v6.download(src.url, str(downloads / "b"), digest=src.digest)
    assert alone.bytes_from_peers == 0      # no IPv4 holder is offered to an IPv6 peer
    late_v6 = client_factory([via_v6], upload_listen="[::1]:0")
    late_v4 = client_factory([via_v4])
    from_v6 = late_v6.download(src.url, str(downloads / "c"), digest=src.digest)
    from_v4 = late_v4.download(src.url, str(downloads / "d"), digest=src.digest)
    assert from_v6.bytes_from_peers == src.size     # all from the IPv6 peer, over IPv6
    assert from_v4.bytes_from_peers == src.size     # all from the IPv4 peer
    assert first_v6.uploader_address[0] == "::"
    assert origin.body_bytes("f.bin") == src.size   # one task, one fetch from the origin
    client = SupernodeClient(via_v6, timeout_s=5)
    try:
        assert [(t["state"], t["peers"]) for t in client.tasks()] == [("done", 2)]
    finally:
        client.close()


def test_a_dual_stack_daemon_takes_a_get_handed_over_from_ipv4_loopback(daemons, origin, tmp_path):
    # The daemon takes downloads only from this host: an IPv4 client seen through `::`
    # as ::ffff:127.0.0.1 is this host too.
    running = daemons.start(listen="[::]:0")
    src = origin.add("f.bin", content(MiB, seed=63))
    client = DaemonClient("127.0.0.1:%d" % _port(running.address), token=running.handoff_token)
    assert client.probe() == PROVEN
    result = client.download(HandoffRequest(src.url, str(tmp_path / "out.bin"), src.digest, {}, [],
                                            None), timeout_s=30)
    assert result.length == src.size
    assert (tmp_path / "out.bin").read_bytes() == src.data


def test_an_ipv6_listener_reports_its_address_unbracketed_and_answers(tmp_path):
    listener = Listener("test-v6", ("::1", 0), _Hello()).start()
    try:
        host, port = listener.address
        assert host == "::1"
        with socket.create_connection(("::1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        listener.stop()


class _Hello:
    def route(self, request):
        from dfly.httpd import Response
        return Response.text("hello %s\n" % request.client[0])


def test_listen_addresses_the_host_cannot_use_are_one_clear_error():
    with pytest.raises(CannotListen, match=r"cannot listen on \[2001:db8::1\]:0: .*IPv6"):
        Listener("test-v6", ("2001:db8::1", 0), _Hello())   # documentation prefix: not ours
    taken = Listener("test-taken", ("::1", 0), _Hello())
    try:
        with pytest.raises(CannotListen, match=r"cannot listen on \[::1\]:\d+: "):
            Listener("test-v6", ("::1", taken.address[1]), _Hello())
    finally:
        taken.stop()
    assert CannotListen.exit_code == 2


def test_the_supernode_refuses_scoped_urls_and_peer_hosts_as_bad_requests(supernode):
    client = SupernodeClient(supernode.address, timeout_s=5)
    try:
        with pytest.raises(BadRequest, match="zone ids"):
            client.register(RegisterRequest(url="http://[fe80::1%25lo]:80/f", peer_id="p1",
                                            peer_port=1))
        for host in ("fe80::1%lo", "10.0.0.1:80", "[::1"):
            with pytest.raises(BadRequest, match="peer host"):
                client.register(RegisterRequest(url="http://127.0.0.1:1/f", peer_id="p2",
                                                peer_port=1, peer_host=host))
    finally:
        client.close()


def test_a_holder_address_that_does_not_parse_fails_the_piece_not_the_worker():
    fetcher = PieceFetcher(timeout_s=2)
    order = PieceOrder(num=0, start=0, size=1, sha256="0" * 64, holder="h", addr="::1:80")
    try:
        with pytest.raises(PieceFailed, match="bad holder address"):
            fetcher.fetch(order.addr, "t" * 64, order, lambda offset, data: None)
    finally:
        fetcher.close()


def test_an_unavailable_family_is_named_in_the_error():
    # EAFNOSUPPORT is what a host without IPv6 at all answers; the line says so.
    from dfly.httpd import _cannot_listen
    line = _cannot_listen(("::1", 8002), socket.AF_INET6, OSError(errno.EAFNOSUPPORT,
                                                                  "Address family not supported"))
    assert line == ("cannot listen on [::1]:8002: Address family not supported "
                    "(this host has no IPv6)")


@pytest.mark.time_limit(30)
def test_the_daemon_proxy_on_ipv6_takes_ipv6_urls_p2p_and_tunnels_to_ipv6(
        supernode_factory, daemons, origin6):
    supernode = supernode_factory(listen="[::1]:0")
    os.makedirs(os.path.join(origin6.root, "big"), exist_ok=True)
    big = origin6.add("big/file.bin", content(3 * MiB, seed=64))
    running = daemons.start(listen="[::1]:0", upload_listen="[::1]:0", supernode=[supernode.address],
                            proxy_rule=["p2p /big/"])
    proxy = parse_address(running.address)
    assert proxy[0] == "::1"
    conn = http.client.HTTPConnection(*proxy, timeout=10)
    try:
        conn.request("GET", big.url)   # http://[::1]:PORT/big/file.bin
        response = conn.getresponse()
        assert response.status == 200 and response.read() == big.data
        assert response.getheader("X-Dfly") == "p2p"
        for target, says in (("[fe80::1%25lo]:443", b"zone ids"), ("::1:443", b"brackets")):
            conn.request("CONNECT", target)
            refused = conn.getresponse()
            assert refused.status == 400 and says in refused.read()
    finally:
        conn.close()
    assert origin6.body_bytes("big/file.bin") == big.size
    target = "[::1]:%d" % origin6.address[1]
    with socket.create_connection(proxy, timeout=10) as sock:
        sock.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\nGET /big/file.bin HTTP/1.1\r\n"
                      "Host: %s\r\nConnection: close\r\n\r\n" % (target, target, target)).encode())
        reply = b""
        while True:
            block = sock.recv(1 << 16)
            if not block:
                break
            reply += block
    head, _, rest = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert rest.partition(b"\r\n\r\n")[2] == big.data


@pytest.mark.time_limit(60)
def test_a_detached_seeder_keeps_serving_on_ipv6(supernode_factory, client_factory, origin6,
                                                  downloads, tmp_path):
    supernode = supernode_factory(listen="[::1]:0")
    src = origin6.add("f.bin", content(3 * MiB, seed=65))
    first = client_factory([supernode.address], upload_listen="0.0.0.0:0", seed_for_s=30)
    first.download(src.url, str(downloads / "first.bin"))
    listener, uploader, tasks = first.detach_listener()
    assert listener.address[0] == "::"     # it advertised ::1: its uploader is on IPv6 too
    pid = detach(listener, uploader, tasks, first.peer_id, 30, str(tmp_path / "seeder-data"),
                 supernodes=[supernode.address],
                 registrations={t: first.registration(t) for t in tasks}, secrets=first.secrets)
    first.close()
    assert pid > 0 and pid != os.getpid()
    try:
        result = client_factory([supernode.address], upload_listen="[::1]:0").download(
            src.url, str(downloads / "second.bin"))
        assert result.bytes_from_peers == src.size   # from the seeder, over IPv6
    finally:
        os.kill(pid, 15)
    wait_until(lambda: _gone(pid), timeout=10, message="the seeder stops on SIGTERM")


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open("/proc/%d/stat" % pid) as f:   # a zombie has exited too
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_supernode_advertising_an_ipv6_address_is_fetched_from_there(
        supernode_factory, client_factory, origin6, downloads):
    with socket.socket(socket.AF_INET6) as probe:   # a free port, named up front
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    supernode = supernode_factory(listen="[::]:%d" % port, advertise="[::1]:%d" % port)
    src = origin6.add("f.bin", content(2 * MiB, seed=66))
    result = client_factory(["127.0.0.1:%d" % port], upload_listen="127.0.0.1:0").download(
        src.url, str(downloads / "f"), digest=src.digest)
    assert result.bytes_from_supernode == src.size
    assert supernode.service.me == "[::1]:%d" % port
    probe = SupernodeClient("127.0.0.1:%d" % port, timeout_s=5)
    try:   # a peer is told to fetch the supernode's pieces from the address it advertises
        tid, _ = probe.register(RegisterRequest(url=src.url, peer_id="probe", peer_port=1,
                                                digest=src.digest))
        state = probe.schedule(tid, ScheduleRequest("probe", want=1))
        assert [p.addr for p in state.pieces] == ["[::1]:%d" % port]
    finally:
        probe.close()


def test_a_listener_takes_a_host_name_and_binds_what_it_resolves_to():
    listener = Listener("test-name", ("localhost", 0), _Hello()).start()
    try:
        host, port = listener.address
        assert host in ("127.0.0.1", "::1")
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        listener.stop()


# gossip (dfly/gossip/node.py): its own UDP and TCP sockets, not httpd's listeners ---------

def _gossip_member(name, bind, advertise):
    from dfly.gossip.node import GossipNode
    from dfly.gossip.swim import SwimConfig
    from dfly.gossip.wire import Keyring
    quick = SwimConfig(probe_interval_s=0.2, probe_timeout_s=0.2, suspicion_mult=3,
                       gossip_interval_s=0.05, push_pull_interval_s=2.0, gossip_to_dead_s=5.0)
    return GossipNode(name, bind, advertise, {}, quick, Keyring([b"cluster key one".ljust(32, b"!")]))


def _gossip_states(node):
    return {m["name"]: (m["state"], m["addr"]) for m in node.members()}


def test_gossip_members_on_ipv6_loopback_see_each_other_at_bracketed_addresses():
    seed = _gossip_member("a", ("::1", 0), "::1").start([])
    other = _gossip_member("b", ("::1", 0), "::1").start([seed.address])
    try:
        wait_until(lambda: _gossip_states(seed).get("b", ("",))[0] == "alive"
                   and _gossip_states(other).get("a", ("",))[0] == "alive",
                   timeout=20, message="both alive in both views")
        assert _gossip_states(other)["a"] == ("alive", "[::1]:%d" % seed.address[1])
    finally:
        other.stop(leave=False)
        seed.stop(leave=False)


def test_a_dual_stack_gossip_member_probes_an_ipv4_member():
    # Bound to `::` it must reach 127.0.0.1 at ::ffff:127.0.0.1: an AF_INET6 socket's
    # sendto refuses a plain IPv4 address, and every probe of the IPv4 member failed.
    seed = _gossip_member("dual", ("::", 0), "::1").start([])
    v4 = _gossip_member("v4", ("127.0.0.1", 0), "127.0.0.1").start([("127.0.0.1", seed.address[1])])
    try:
        wait_until(lambda: seed.stats().get("probes_acked", 0) >= 5, timeout=20,
                   message="the dual-stack member's probes of the IPv4 one answered")
        assert _gossip_states(seed)["v4"][0] == "alive"
        assert seed.stats().get("udp_send_failed", 0) == 0, seed.stats()
    finally:
        v4.stop(leave=False)
        seed.stop(leave=False)


def test_a_gossip_address_the_host_cannot_use_is_the_listeners_one_line():
    taken = _gossip_member("a", ("::1", 0), "::1")
    try:
        with pytest.raises(CannotListen, match=r"cannot listen on \[::1\]:%d: " % taken.address[1]):
            _gossip_member("b", ("::1", taken.address[1]), "::1")
        with pytest.raises(CannotListen, match=r"cannot listen on \[2001:db8::1\]:7946: .*IPv6"):
            _gossip_member("b", ("2001:db8::1", 7946), "2001:db8::1")   # not this host's
    finally:
        taken.stop(leave=False)


_DUAL_STACK_CHECK = r"""
import socket, sys
from dfly.gossip.node import _bind_pair
from dfly.httpd import Listener
listener = Listener("dual", ("::", 0), None)
udp, tcp = _bind_pair(("::", 0))
for port in (listener.address[1], tcp.getsockname()[1]):
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
print("both took IPv4")
"""


def _namespace_tools() -> str:
    import shutil
    if os.geteuid() != 0:
        return "needs root (a network namespace of its own)"
    if not shutil.which("unshare") or not shutil.which("sysctl") or not shutil.which("ip"):
        return "needs unshare, sysctl and ip"
    return ""


@pytest.mark.skipif(bool(_namespace_tools()), reason=_namespace_tools() or "-")
def test_listeners_on_every_address_take_ipv4_where_the_host_default_is_ipv6_only():
    # A namespace of our own with net.ipv6.bindv6only=1 (the BSDs' and Windows' default):
    # a listener on `::` is dual-stack only if it switches IPV6_V6ONLY off itself.
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = ("sysctl -q -w net.ipv6.bindv6only=1 && ip link set lo up && exec \"$@\"")
    done = subprocess.run(["unshare", "--net", "sh", "-c", script, "sh", sys.executable, "-c",
                           _DUAL_STACK_CHECK], capture_output=True, text=True, timeout=60,
                          cwd=root, env=dict(os.environ, PYTHONPATH=root))
    assert done.returncode == 0 and "both took IPv4" in done.stdout, done.stderr[-2000:]


def test_per_client_connection_limits_count_ipv6_clients_and_ipv4_ones_of_a_dual_stack_listener():
    from helpers import read_until_closed, status_of
    listener = Listener("test-dual", ("::", 0), _Hello(), max_connections_per_client=2).start()
    port = listener.address[1]

    def connect(source):
        return socket.create_connection(("::1" if ":" in source else "127.0.0.1", port),
                                        timeout=10, source_address=(source, 0))

    def get(source):
        with connect(source) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = read_until_closed(sock)
        return status_of(reply), reply

    held = []
    try:
        for source in ("::1", "::1", "127.0.0.2", "127.0.0.2"):
            held.append(connect(source))
            held[-1].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert held[-1].recv(4096).startswith(b"HTTP/1.1 200")
        assert get("::1")[0] == 503
        assert get("127.0.0.2")[0] == 503   # ::ffff:127.0.0.2 is the same client
        status, reply = get("127.0.0.1")
        assert status == 200 and reply.endswith(b"hello 127.0.0.1\n")
        held.pop(0).close()
        wait_until(lambda: get("::1")[0] == 200, message="a slot of ::1 freed")
    finally:
        for sock in held:
            sock.close()
        listener.stop()


@pytest.mark.time_limit(60)
def test_supernode_tiers_on_ipv6_pass_the_file_down_once(supernode_factory, client_factory,
                                                         origin6, downloads, tmp_path):
    upstream = supernode_factory(data_dir=tmp_path / "region-a", listen="[::1]:0")
    # The downstream's uploader is left on its wildcard default: it reaches the upstream
    # over IPv6, so it must listen (and be offered) on IPv6.
    below = supernode_factory(data_dir=tmp_path / "region-b", listen="[::1]:0",
                              upstream_supernode=[upstream.address])
    src = origin6.add("f.bin", content(9 * MiB, seed=67))
    results = [client_factory([below.address], upload_listen="[::1]:0", no_back_source=True,
                              seed_for_s=30).download(src.url, str(downloads / ("g%d" % i)),
                                                      digest=src.digest) for i in range(2)]
    assert results[1].bytes_from_peers > 0
    assert origin6.body_bytes("f.bin") == src.size
    client = SupernodeClient(upstream.address, timeout_s=5)
    try:
        task, = client.tasks()
        assert task["served_bytes"] == src.size   # one copy crossed the link, over IPv6
    finally:
        client.close()
    assert below.service.upstream.fallbacks == 0


@pytest.mark.time_limit(60)
def test_a_publish_reaches_daemons_subscribed_over_ipv6_by_a_bracketed_topic(
        supernode_factory, daemons, origin6, tmp_path):
    token = tmp_path / "publish.token"
    token.write_text("publish-token-for-tests\n")
    supernode = supernode_factory(listen="[::1]:0", preheat_token_file=str(token))
    src = origin6.add("models/one.bin", content(3 * MiB, seed=68))
    topic = "[::1]:%d/models/*" % origin6.address[1]   # a file's name: its URL without scheme
    subscribed = [daemons.start(listen="[::1]:0", upload_listen="0.0.0.0:0",
                                supernode=[supernode.address], subscribe=[topic],
                                subscribe_poll_s=1.0, subscribe_jitter_s=0.0) for _ in range(2)]
    client = SupernodeClient(supernode.address, timeout_s=10)
    try:
        wait_until(lambda: len(client.subscriptions()["subscriptions"]) == 2, timeout=10,
                   message="both daemons subscribed")
        job = client.publish({"url": src.url}, "publish-token-for-tests")
        wait_until(lambda: client.preheat_job(job["id"], "publish-token-for-tests")["state"]
                   == "SUCCESS", timeout=30, message="the publish job succeeded")
    finally:
        client.close()

    def holds(daemon):
        path = daemon.cache.lookup("task-" + task_id(src.url))
        if not path:
            return False
        with open(path, "rb") as f:
            return f.read() == src.data
    wait_until(lambda: all(holds(d) for d in subscribed), timeout=30,
               message="every subscribed daemon holds the file")
    assert origin6.body_bytes("models/one.bin") == src.size


@pytest.mark.time_limit(60)
def test_supernodes_gossiping_on_ipv6_agree_and_show_bracketed_members(
        supernode_factory, client_factory, origin6, downloads, tmp_path):
    import json
    import urllib.request

    from dfly.gossip.cluster import homes
    key = tmp_path / "gossip.key"
    key.write_text("a cluster key of more than sixteen characters\n")
    sns = []
    for i in range(2):
        join = ["[::1]:%d" % sns[0].gossip.address[1]] if sns else []
        sns.append(supernode_factory(data_dir=tmp_path / ("sn%d" % i), listen="[::1]:0", gossip=True,
                                     gossip_key_file=str(key), gossip_listen="[::1]:0",
                                     gossip_profile="fast", join=join))
    everyone = sorted(sn.service.me for sn in sns)
    assert all(me.startswith("[::1]:") for me in everyone)

    def alive(sn):
        return sorted(m["member"] for m in sn.service.cluster_status()["members"] if m["alive"])
    wait_until(lambda: all(alive(sn) == everyone for sn in sns), timeout=20, message="both alive")
    src = origin6.add("f.bin", content(3 * MiB, seed=69))
    owner = homes(task_id(src.url), everyone)[0]
    entry = next(sn for sn in sns if sn.service.me != owner)   # redirected to the owner
    client_factory([entry.address], upload_listen="[::1]:0").download(
        src.url, str(downloads / "f"), digest=src.digest)
    assert origin6.requests("f.bin") == 1
    with urllib.request.urlopen("http://%s/v1/cluster" % entry.address, timeout=5) as r:
        cluster = json.loads(r.read())
    assert sorted(m["member"] for m in cluster["members"]) == everyone
    with urllib.request.urlopen("http://%s/metrics" % entry.address, timeout=5) as r:
        assert 'dfly_gossip_members{state="alive"} 2' in r.read().decode()
    with urllib.request.urlopen("http://%s/v1/dashboard" % owner, timeout=5) as r:
        feed = json.loads(r.read())
    assert feed["me"] == owner and sorted(m["member"] for m in feed["cluster"]["members"]) == everyone


@pytest.mark.time_limit(90)
def test_the_proxy_of_two_daemons_gossiping_on_ipv6_takes_a_file_from_the_origin_once(
        daemons, origin6, tmp_path):
    key = tmp_path / "gossip.key"
    key.write_text("a cluster key of more than sixteen characters\n")
    os.makedirs(os.path.join(origin6.root, "big"), exist_ok=True)
    big = origin6.add("big/file.bin", content(4 * MiB, seed=70))
    started = []
    for _ in range(2):
        join = ["[::1]:%d" % started[0].gossip.address[1]] if started else []
        started.append(daemons.start(listen="[::1]:0", upload_listen="[::1]:0", gossip=True,
                                     gossip_key_file=str(key), gossip_listen="[::1]:0",
                                     gossip_profile="fast", join=join, heartbeat_s=0.5,
                                     proxy_rule=["p2p /big/"]))

    def alive(running):
        return [m["member"] for m in running.scheduler.service.cluster_status()["members"]
                if m["alive"]]
    wait_until(lambda: all(len(alive(d)) == 2 for d in started), timeout=30,
               message="each scheduler sees the other alive")
    assert all(m.startswith("[::1]:") for m in alive(started[0]))
    for running in started:
        host, port = parse_address(running.address)
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            conn.request("GET", big.url)
            response = conn.getresponse()
            assert response.status == 200 and response.read() == big.data
        finally:
            conn.close()
    assert len([s for s in origin6.served("big/file.bin") if s.method == "GET"]) == 1


@pytest.mark.time_limit(60)
def test_an_ftp_source_on_ipv6_is_read_once_for_a_swarm(supernode_factory, client_factory,
                                                         downloads, tmp_path):
    from ftpserver import FtpOrigin
    # ftplib speaks EPSV on IPv6 (PASV names IPv4 addresses only)
    ftp = FtpOrigin(str(tmp_path / "ftp"), host="::1")
    try:
        data = content(3 * MiB, seed=71)
        url = ftp.add("f.bin", data)
        assert "@[::1]:" in url
        supernode = supernode_factory(listen="[::1]:0")
        first = client_factory([supernode.address], upload_listen="[::1]:0", seed_for_s=30)
        first.download(url, str(downloads / "a"))
        second = client_factory([supernode.address], upload_listen="[::1]:0")
        result = second.download(url, str(downloads / "b"))
        assert result.via == "p2p" and result.bytes_from_peers > 0
        assert (downloads / "b").read_bytes() == data
        assert ftp.body_bytes() == len(data)
    finally:
        ftp.stop()


@pytest.mark.time_limit(90)
def test_the_registry_mirror_reaches_an_upstream_registry_on_ipv6(supernode_factory, daemons,
                                                                   tmp_path):
    from registry import MISSING, Registry, build_image, dir_layers, mirror_conf, pull, push
    if MISSING:
        pytest.skip(MISSING)
    registry = Registry(str(tmp_path / "registry"), listen="[::]:0")
    try:
        image = build_image(str(tmp_path / "layout"), "v1", layer_sizes=(2 * MiB, MiB))
        push(image, registry, "team/app")   # over 127.0.0.1: skopeo takes no IPv6 literal
        upstream = "http://[::1]:%d" % registry.address[1]
        supernode = supernode_factory(listen="[::1]:0")
        # Dual stack: skopeo reaches the daemon over IPv4; the daemon, the supernode and
        # the registry talk over IPv6.
        running = daemons.start(listen="[::]:0", upload_listen="[::1]:0",
                                supernode=[supernode.address], registry_mirror=upstream)
        conf = mirror_conf(str(tmp_path / "registries.conf"), registry,
                           "127.0.0.1:%d" % _port(running.address))
        pull(conf, registry, "team/app", "v1", str(tmp_path / "pulled"))
        assert dir_layers(str(tmp_path / "pulled")) == image.layers["amd64"]
        registry.settle()
        for layer in image.layers["amd64"]:   # fetched by the supernode, from [::1], once
            assert len(registry.blob_gets(layer)) == 1
        # ...through the daemon (skopeo goes to the registry itself when the mirror fails)
        conn = http.client.HTTPConnection("::1", _port(running.address), timeout=10)
        try:
            conn.request("GET", "/v1/stats")
            stats = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        assert stats["downloads"] >= 2 and stats["bytes_from_supernode"] >= 3 * MiB, stats
    finally:
        registry.stop()


_NAMED_SWARM = r"""
import json, sys
from helpers import content
from origin import Origin
from dfly.client import Client
from dfly.supernode import app
from dfly.supernode.config import SupernodeConfig
tmp = sys.argv[1]
origin = Origin(tmp + "/origin", host="::1")
src = origin.add("f.bin", content(3 << 20, seed=72))
supernode = app.start(SupernodeConfig(listen="127.0.0.1:0"), tmp + "/sn")
at = "both.test:%d" % supernode.listener.address[1]
url = "http://v6only.test:%d/f.bin" % origin.address[1]
first = Client([at], data_dir=tmp + "/p0", seed_for_s=30)
results = [first.download(url, tmp + "/a", digest=src.digest)]
with Client([at], data_dir=tmp + "/p1") as second:
    results.append(second.download(url, tmp + "/b", digest=src.digest))
first.close()
supernode.stop()
print(json.dumps({"via": [r.via for r in results], "from_peers": results[1].bytes_from_peers,
                  "origin": origin.body_bytes("f.bin"), "size": src.size}))
origin.stop()
"""


@pytest.mark.skipif(bool(_namespace_tools()), reason=_namespace_tools() or "-")
@pytest.mark.time_limit(60)
def test_names_are_dialled_at_the_addresses_the_resolver_gives_in_its_order(tmp_path):
    # A hosts file of our own (a private mount namespace): the origin's name has only an
    # IPv6 address; the supernode's has ::1 first, where nothing listens (the supernode
    # is on 127.0.0.1), then 127.0.0.1: clients go on to the next address, as
    # socket.create_connection does.
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 v6only.test\n::1 both.test\n127.0.0.1 both.test\n")
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script, str(hosts), sys.executable,
                           "-c", _NAMED_SWARM, str(tmp_path)], capture_output=True, text=True,
                          timeout=50, cwd=root,
                          env=dict(os.environ, PYTHONPATH=root + os.pathsep + os.path.join(root, "tests")))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["via"] == ["p2p", "p2p"] and result["from_peers"] > 0, result
    assert result["origin"] == result["size"]


@pytest.mark.time_limit(60)
def test_bench_against_an_ipv6_supernode_runs_its_peers_on_ipv6(supernode_factory, origin6):
    from dfly import options
    from dfly.bench import app as bench
    from dfly.bench.config import BenchConfig
    supernode = supernode_factory(listen="[::1]:0")
    src = origin6.add("bench.bin", content(6 * MiB, seed=73))
    # The uploaders are left on the wildcard default: they follow the family the
    # simulated peers reached the supernode over.
    config = options.build(BenchConfig, None, None, supernode=supernode.address, peers=4, waves=2,
                           wave_interval_s=0.2)
    summary = bench.run(config, src.url)
    assert summary["succeeded"] == 4 and summary["bytes"]["peers"] > 0, summary
    assert origin6.body_bytes("bench.bin") == src.size


def test_new_task_limits_of_a_dual_stack_supernode_count_each_client_once_whatever_its_family(
        supernode_factory, origin6):
    from dfly.supernode.client import SupernodeDown
    supernode = supernode_factory(listen="[::]:0", max_new_tasks_per_client=2)
    port = _port(supernode.address)
    for i in range(6):
        origin6.add("t%d" % i, content(1000, seed=i))

    def register(at, i):
        client = SupernodeClient(at, timeout_s=10)
        try:
            client.register(RegisterRequest(url=origin6.url("t%d" % i), peer_id="p%d" % i, peer_port=9))
        finally:
            client.close()
    for i in range(2):
        register("[::1]:%d" % port, i)
    with pytest.raises(SupernodeDown, match="new tasks a minute"):
        register("[::1]:%d" % port, 2)
    register("127.0.0.1:%d" % port, 3)   # an IPv4 client has a budget of its own...
    register("[::ffff:127.0.0.1]:%d" % port, 4)   # ...spent the same through its mapped form
    with pytest.raises(SupernodeDown, match="new tasks a minute"):
        register("127.0.0.1:%d" % port, 5)


@pytest.mark.time_limit(90)
def test_an_image_on_an_ipv6_registry_is_preheated_and_exported_by_its_bracketed_name(
        supernode_factory, tmp_path):
    from registry import MISSING, Registry, build_image, push

    from dfly.cli import main
    if MISSING:
        pytest.skip(MISSING)
    registry = Registry(str(tmp_path / "registry"), listen="[::]:0")
    try:
        image = build_image(str(tmp_path / "layout"), "v1", layer_sizes=(2 * MiB, MiB))
        push(image, registry, "team/app")
        token = tmp_path / "preheat.token"
        token.write_text("preheat-token-for-tests\n")
        supernode = supernode_factory(listen="[::1]:0", preheat_token_file=str(token))
        name = "[::1]:%d/team/app:v1" % registry.address[1]
        assert main(["preheat", name, "--plain-http", "--platform", "linux/amd64", "--supernode",
                     supernode.address, "--token-file", str(token), "--timeout", "60s"]) == 0
        archive = tmp_path / "app.tar"
        assert main(["export", name, "--plain-http", "--platform", "linux/amd64", "-o", str(archive),
                     "--supernode", supernode.address, "--upload-listen", "[::1]:0",
                     "--data-dir", str(tmp_path / "export"), "-q"]) == 0
        assert archive.stat().st_size > 3 * MiB
        registry.settle()
        for layer in image.layers["amd64"]:   # preheated once; the export read the cache
            assert len(registry.blob_gets(layer)) == 1
    finally:
        registry.stop()
