"""What /metrics counts, checked against what happened: failed tasks by reason,
piece failures and blacklisted peers on the supernode; mirror and proxy
requests by outcome and rule action, and bytes answered from the cache, on the
daemon. Label values are bounded sets: no URL, header or secret appears."""
import http.client
import os
import socket
import ssl
import time

import pytest
from certs import Certs
from daemons import fetch, registry_blob, scrape
from helpers import MiB, content, reserve_ports, wait_until

from dfly.errors import SourceError
from dfly.protocol import piecetoken
from dfly.protocol.address import parse_address
from dfly.protocol.messages import Failure, RegisterRequest, ScheduleRequest
from dfly.protocol.task import task_id
from dfly.supernode.client import SupernodeClient
from dfly.supernode.cluster import rendezvous_owner
from dfly.tls import TLS, TLSOptions, http_connection


def proxied_get(proxy_address: str, url: str) -> bytes:
    host, port = parse_address(proxy_address, 0)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", url)
        return conn.getresponse().read()
    finally:
        conn.close()


def test_a_source_that_fails_is_counted_by_its_reason(origin, supernode, client_factory, downloads):
    url = origin.url("missing.bin") + "?token=s3cret"
    with pytest.raises(SourceError):
        client_factory([supernode.address], no_back_source=True).download(url, str(downloads / "x"))
    samples = wait_until(lambda: (lambda s: s if s.get(
        'dfly_supernode_tasks_failed_total{reason="SourceError"}') == 1 else None)(
            scrape(supernode.address)), timeout=10)
    assert samples["dfly_supernode_tasks_registered_total"] == 1
    assert samples['dfly_supernode_tasks{state="failed"}'] == 1
    assert samples['dfly_supernode_source_fetch_seconds_count{result="failure"}'] == 1
    assert "s3cret" not in "".join(samples) and "missing.bin" not in "".join(samples)


@pytest.mark.time_limit(60)
def test_piece_failures_are_counted_by_reason_and_a_holder_failing_five_peers_is_blacklisted(
        origin, supernode, sn_client, tmp_path):
    src = origin.add("lied.bin", content(8 * MiB, seed=2))
    liar = SupernodeClient(supernode.address, timeout_s=5)
    tid, _ = liar.register(RegisterRequest(url=src.url, peer_id="fake-liar", peer_port=1,
                                           peer_host="127.0.0.1"))
    task = wait_until(lambda: (lambda t: t if t["state"] == "done" else None)(sn_client.task(tid)),
                      timeout=10)
    liar.schedule(tid, ScheduleRequest("fake-liar", done=list(range(task["piece_count"])), want=0))
    # Failures that doubt the liar's copy take that piece from it (then only the supernode
    # has it, and it goes first, rarest): so they come last, and each asks for one more.
    reasons = ["timed out after 5s", "connection refused", "connection reset by peer",
               "short piece: 10 of 20 bytes", "digest mismatch: sha256 abc"]
    lost = 0
    for i, reason in enumerate(reasons):   # each reporter is sent to the liar once, and fails
        reporter = SupernodeClient(supernode.address, timeout_s=5)
        try:
            liar.heartbeat(tid, "fake-liar")   # heard from: no longer suspect, so asked again
            reporter.register(RegisterRequest(url=src.url, peer_id="peer-%d" % i, peer_port=2,
                                              peer_host="127.0.0.1"))
            state = reporter.schedule(tid, ScheduleRequest("peer-%d" % i, want=lost + 1))
            from_liar = [p.num for p in state.pieces if p.holder == "fake-liar"]
            assert len(from_liar) == 1, (i, state.pieces)
            reporter.schedule(tid, ScheduleRequest("peer-%d" % i, want=0, failed=[
                Failure(from_liar[0], "fake-liar", reason)]))
            lost += reason.startswith(("short", "digest"))
        finally:
            reporter.close()
    late = SupernodeClient(supernode.address, timeout_s=5)   # reports the liar once more, unasked
    late.register(RegisterRequest(url=src.url, peer_id="peer-late", peer_port=3, peer_host="127.0.0.1"))
    late.schedule(tid, ScheduleRequest("peer-late", want=0, failed=[Failure(0, "fake-liar", "timed out")]))
    late.close()
    liar.close()
    samples = scrape(supernode.address)
    assert samples['dfly_supernode_piece_failures_total{reason="digest_mismatch"}'] == 1
    assert samples['dfly_supernode_piece_failures_total{reason="timeout"}'] == 2
    assert samples['dfly_supernode_piece_failures_total{reason="short_piece"}'] == 1
    assert samples['dfly_supernode_piece_failures_total{reason="connection"}'] == 2
    assert samples["dfly_supernode_peers_blacklisted_total"] == 1
    assert samples["dfly_supernode_peers"] == 7
    assert samples["dfly_supernode_schedule_reply_seconds_count"] == 12


@pytest.mark.time_limit(60)
def test_daemon_counts_mirror_and_proxy_requests_by_outcome_and_action(origin, supernode, daemons):
    blob = content(3 * MiB, seed=4)
    _, blob_path, _ = registry_blob(origin, blob)
    plain = origin.add("plain.txt", b"hello")
    os.makedirs(os.path.join(origin.root, "big"), exist_ok=True)
    big = origin.add("big/one.bin", content(MiB, seed=5))
    running = daemons.start(supernode=[supernode.address], registry_mirror=origin.url("").rstrip("/"),
                            proxy_rule=["p2p /big/"])
    for _ in range(2):   # the first is a download, the second is answered from the cache
        assert fetch(running.address, "GET", blob_path)[2] == blob
    assert proxied_get(running.address, plain.url) == b"hello"
    assert proxied_get(running.address, big.url) == big.data
    samples = scrape(running.address)
    assert samples['dfly_daemon_mirror_requests_total{outcome="p2p"}'] == 1
    assert samples['dfly_daemon_mirror_requests_total{outcome="cache"}'] == 1
    assert samples['dfly_daemon_proxy_requests_total{action="none",outcome="upstream"}'] == 1
    assert samples['dfly_daemon_proxy_requests_total{action="p2p",outcome="p2p"}'] == 1
    assert samples['dfly_daemon_download_bytes_total{source="local"}'] == len(blob)
    assert samples['dfly_daemon_downloads_total{result="success",reason=""}'] == 2
    assert samples['dfly_daemon_cache_files'] == 2
    assert samples["dfly_daemon_upload_slots_in_use"] == 0


@pytest.mark.time_limit(60)
def test_daemon_shows_an_upload_slot_in_use_while_a_peer_takes_a_piece(origin, supernode, daemons):
    blob = content(8 * MiB, seed=9)
    _, blob_path, _ = registry_blob(origin, blob)
    running = daemons.start(supernode=[supernode.address], registry_mirror=origin.url("").rstrip("/"))
    assert fetch(running.address, "GET", blob_path)[2] == blob
    (tid,) = running.p2p.seeding
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # it reads nothing: the send waits
    try:
        slow.connect(running.p2p.uploader_address)
        # Eight pieces asked at once (kept alive): more than the socket buffers hold.
        token = piecetoken.mint(running.p2p.secrets.keys()[0], tid, "slow", time.time())
        slow.sendall(b"".join(b"GET /v1/tasks/%s/pieces/%d?peer=slow HTTP/1.1\r\nHost: x\r\n%s: %s\r\n\r\n"
                              % (tid.encode(), n, piecetoken.HEADER.encode(), token.encode())
                              for n in range(8)))
        wait_until(lambda: scrape(running.address)["dfly_daemon_upload_slots_in_use"] == 1, timeout=10)
    finally:
        slow.close()
    wait_until(lambda: scrape(running.address)["dfly_daemon_upload_slots_in_use"] == 0, timeout=20)


@pytest.mark.time_limit(60)
def test_cluster_members_show_down_then_up_and_who_owns_the_tasks(origin, supernode_factory, tmp_path,
                                                                   client_factory, downloads):
    members = reserve_ports(2)
    # Dead after 3 s without an answer, not 1: pings time out after half of it, and a member
    # a loaded machine made miss 1 s of them would be down while the task's owner is chosen.
    settings = dict(cluster=[",".join(members)], cluster_secret="s3cret", member_dead_after_s=3.0)
    first = supernode_factory(data_dir=tmp_path / "a", listen=members[0], **settings)
    up = 'dfly_supernode_cluster_member_up{member="%s"}'
    wait_until(lambda: scrape(first.address).get(up % members[1]) == 0, timeout=10,
               message="the member not started yet shown down")
    assert scrape(first.address)[up % members[0]] == 1
    supernode_factory(data_dir=tmp_path / "b", listen=members[1], **settings)
    wait_until(lambda: scrape(first.address).get(up % members[1]) == 1, timeout=10,
               message="the started member shown up")
    src = origin.add("owned.bin", content(2 * MiB, seed=6))
    client_factory([first.address]).download(src.url, str(downloads / "owned.bin"))
    owner = rendezvous_owner(task_id(src.url), members)
    owned = scrape(owner)
    assert owned['dfly_supernode_cluster_tasks_owned{member="%s"}' % owner] == 1
    assert sum(v for k, v in owned.items() if k.startswith("dfly_supernode_cluster_tasks_owned")) == 1


def test_with_mutual_tls_required_metrics_need_a_client_certificate(supernode_factory, tmp_path):
    certs = Certs(str(tmp_path / "certs"))
    supernode = supernode_factory(**certs.mtls("supernode"))
    host, port = parse_address(supernode.address, 0)
    anonymous = TLS(TLSOptions(tls_ca=certs.ca))   # trusts the supernode, shows no certificate
    with pytest.raises((ssl.SSLError, OSError)):
        _get_metrics(http_connection(anonymous, host, port, 5))
    member = TLS(TLSOptions(**certs.mtls("scraper")))
    status, body = _get_metrics(http_connection(member, host, port, 5))
    assert status == 200 and b"# TYPE dfly_supernode_peers gauge" in body


def _get_metrics(conn):
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_silent_peer_is_counted_forgotten(origin, supernode_factory):
    # Silent for 2 s, not less: the count of 1 below is read right after the registration,
    # before the janitor's pass that forgets it (a loaded machine can pause that long).
    supernode = supernode_factory(peer_ttl_s=2.0)
    src = origin.add("quiet.bin", content(MiB, seed=10))
    quiet = SupernodeClient(supernode.address, timeout_s=5)
    try:
        quiet.register(RegisterRequest(url=src.url, peer_id="peer-quiet", peer_port=4,
                                       peer_host="127.0.0.1"))
    finally:
        quiet.close()
    assert scrape(supernode.address)["dfly_supernode_peers"] == 1
    wait_until(lambda: scrape(supernode.address)["dfly_supernode_peers_forgotten_total"] == 1,
               timeout=15, message="the silent peer forgotten")
    assert scrape(supernode.address)["dfly_supernode_peers"] == 0
