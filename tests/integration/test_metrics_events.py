"""Every family /metrics shows is in docs/METRICS.md with its type, and the families
the other metrics tests do not reach count real events: pieces served, upload
slots, cache size and limit, a digest mismatch and a source timeout on the
supernode; a fallback to the source, a failed download, seeding, bytes uploaded
and the cache on the daemon; denied sources as a counter."""
import http.client
import os
import re
import socket
import time

import pytest
from daemons import fetch, registry_blob, scrape
from helpers import MiB, content, reserve_ports, wait_until

from dfly import __version__
from dfly.errors import DigestMismatch, SourceDenied, SourceError
from dfly.protocol import piecetoken
from dfly.protocol.messages import RegisterRequest, ScheduleRequest
from dfly.protocol.task import task_id
from dfly.supernode.client import SupernodeClient
from dfly.supernode.cluster import rendezvous_owner

METRICS_MD = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "METRICS.md")
TYPE_LINE = re.compile(r"^# TYPE (\S+) (counter|gauge|histogram)$", re.M)
DOC_ROW = re.compile(r"^\| `(dfly_[a-z_]+)` \| (counter|gauge|histogram) \|", re.M)


def family_types(address: str) -> dict:
    return dict(TYPE_LINE.findall(fetch(address, "GET", "/metrics")[2].decode()))


def test_every_family_on_metrics_is_documented_with_its_type(supernode, daemons):
    daemon = daemons.start(supernode=[supernode.address])
    with open(METRICS_MD, encoding="utf-8") as f:
        documented = dict(DOC_ROW.findall(f.read()))
    for running in (supernode, daemon):
        shown = family_types(running.address)
        assert shown, running.address
        assert {name: kind for name, kind in shown.items() if documented.get(name) != kind} == {}


def test_every_family_is_named_as_prometheus_asks(supernode, daemons):
    """Counters end in _total; a size's name ends in its unit, _bytes (then _total)."""
    daemon = daemons.start(supernode=[supernode.address])
    for running in (supernode, daemon):
        for name, kind in family_types(running.address).items():
            base = name[:-len("_total")] if kind == "counter" else name
            assert kind != "counter" or name.endswith("_total"), name
            assert "bytes" not in base or base.endswith("_bytes"), name
            assert "seconds" not in base or base.endswith("_seconds"), name


@pytest.mark.time_limit(60)
def test_zone_bytes_are_a_counter_that_a_task_leaving_memory_takes_nothing_from(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(cache_size=MiB + MiB // 2)   # room for one finished 1 MiB file
    first = origin.add("first.bin", content(MiB, seed=28))   # one piece
    client_factory([supernode.address], seed_for_s=0).download(first.url, str(downloads / "1"))
    across = 'dfly_supernode_peer_zone_bytes_total{zone="across"}'
    assert scrape(supernode.address)[across] == 0
    peers = {name: SupernodeClient(supernode.address, timeout_s=5) for name in ("peer-a", "peer-b")}
    try:
        for (name, client), zone in zip(peers.items(), ("eu/zone-a", "eu/zone-b")):
            tid, _ = client.register(RegisterRequest(url=first.url, peer_id=name, peer_port=6,
                                                     peer_host="127.0.0.1", location=zone))
        peers["peer-a"].schedule(tid, ScheduleRequest("peer-a", done=[0], want=0))
        order = peers["peer-b"].schedule(tid, ScheduleRequest("peer-b", want=1)).pieces
        assert [(p.num, p.holder) for p in order] == [(0, "peer-a")]
        peers["peer-b"].schedule(tid, ScheduleRequest("peer-b", done=[0], want=0))
        assert scrape(supernode.address)[across] == MiB
        for name, client in peers.items():
            client.leave(tid, name)
    finally:
        for client in peers.values():
            client.close()
    second = origin.add("second.bin", content(MiB, seed=29))   # evicts the first from the cache
    client_factory([supernode.address], seed_for_s=0).download(second.url, str(downloads / "2"))
    wait_until(lambda: tid not in _task_ids(supernode), timeout=10, message="the first task evicted")
    assert scrape(supernode.address)[across] == MiB


@pytest.mark.time_limit(60)
def test_supernode_counts_pieces_served_its_cache_and_the_upload_slots_in_use(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(cache_size=300 * MiB)
    src = origin.add("served.bin", content(4 * MiB, seed=21))
    result = client_factory([supernode.address]).download(src.url, str(downloads / "a"))
    samples = scrape(supernode.address)
    peer = SupernodeClient(supernode.address, timeout_s=5)
    pieces = peer.task(result.task_id)["piece_count"]
    assert pieces > 1
    assert samples["dfly_supernode_upload_bytes_total"] == result.bytes_from_supernode == src.size
    assert samples["dfly_supernode_pieces_served_total"] == pieces
    assert samples["dfly_supernode_cache_bytes"] >= src.size
    assert samples["dfly_supernode_cache_limit_bytes"] == 300 * MiB
    assert samples["dfly_supernode_upload_slots_in_use"] == 0
    # A peer sent to the supernode for two pieces holds two of its upload slots until it reports.
    try:
        tid, _ = peer.register(RegisterRequest(url=src.url, peer_id="peer-slots", peer_port=5,
                                               peer_host="127.0.0.1"))
        state = peer.schedule(tid, ScheduleRequest("peer-slots", want=2))
        taken = [p.num for p in state.pieces]
        assert len(taken) == 2, state
        assert scrape(supernode.address)["dfly_supernode_upload_slots_in_use"] == 2
        peer.schedule(tid, ScheduleRequest("peer-slots", done=taken, want=0))
        assert scrape(supernode.address)["dfly_supernode_upload_slots_in_use"] == 0
    finally:
        peer.close()


@pytest.mark.time_limit(60)
def test_supernode_counts_a_digest_mismatch_and_a_source_timeout_by_reason(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(source_timeout_s=1.0)
    src = origin.add("wrong.bin", content(MiB, seed=22))
    with pytest.raises(DigestMismatch):
        client_factory([supernode.address], no_back_source=True).download(
            src.url, str(downloads / "w"), digest="sha256:" + "1" * 64)
    drip = origin.add("drip.bin", content(MiB, seed=23))
    origin.fault("drip.bin", drip_s=0.1)   # a header byte now and then: only the watchdog ends it
    stall = origin.add("stall.bin", content(2 * MiB, seed=30))
    origin.fault("stall.bin", stall_after=MiB // 2)   # then nothing: the socket times out
    silent = socket.socket()   # accepts connections (the kernel does) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    urls = [drip.url, stall.url, "http://127.0.0.1:%d/silent.bin" % silent.getsockname()[1]]
    try:
        for i, url in enumerate(urls):
            with pytest.raises(SourceError):
                client_factory([supernode.address], no_back_source=True, timeout_s=15).download(
                    url, str(downloads / ("t%d" % i)))
    finally:
        origin.release()
        silent.close()
    # A fetch is counted as its thread ends, just after the task failed (which the get
    # saw): read the counts once every failure is in, then check each one's reason.
    samples = wait_until(lambda: (lambda s: s if _failed_count(s) >= 1 + len(urls) else None)(
        scrape(supernode.address)), timeout=10, message="every failed fetch counted")
    assert samples['dfly_supernode_tasks_failed_total{reason="DigestMismatch"}'] == 1
    assert samples['dfly_supernode_tasks_failed_total{reason="Timeout"}'] == len(urls)
    assert 'dfly_supernode_tasks_failed_total{reason="SourceError"}' not in samples
    assert samples["dfly_supernode_tasks_succeeded_total"] == 0


def test_supernode_counts_denied_sources_as_a_counter(supernode_factory, client_factory, downloads):
    supernode = supernode_factory(deny_source=["127.0.0.2/32"])
    with pytest.raises(SourceDenied):   # refused at registration: nothing is sent to 127.0.0.2
        client_factory([supernode.address], no_back_source=True).download(
            "http://127.0.0.2:9/blob", str(downloads / "x"))
    assert family_types(supernode.address)["dfly_supernode_sources_denied_total"] == "counter"
    assert scrape(supernode.address)["dfly_supernode_sources_denied_total"] == 1


@pytest.mark.time_limit(60)
def test_daemon_counts_a_fallback_a_failure_its_cache_seeding_and_bytes_uploaded(
        origin, supernode, daemons):
    refused = content(3 * MiB, seed=24)   # the origin refuses the supernode (403) but not the daemon
    name, refused_path, _ = registry_blob(origin, refused, repo="team/refused")
    origin.fault(name, require=("User-Agent", "dfly/" + __version__))
    shared = content(3 * MiB, seed=25)
    _, shared_path, _ = registry_blob(origin, shared, repo="team/shared")
    os.makedirs(os.path.join(origin.root, "big"), exist_ok=True)
    proxied = origin.add("big/refused.bin", content(MiB, seed=26))
    origin.fault("big/refused.bin", require=("User-Agent", "dfly/" + __version__))
    running = daemons.start(supernode=[supernode.address], registry_mirror=origin.url("").rstrip("/"),
                            proxy_rule=["p2p /big/"], cache_size=200 * MiB)
    assert fetch(running.address, "GET", refused_path)[2] == refused
    assert fetch(running.address, "GET", shared_path)[2] == shared
    # The proxy's P2P download fails (the supernode was refused); it passes the request on.
    assert _proxied_get(running.address, proxied.url) == proxied.data
    samples = scrape(running.address)
    assert samples["dfly_daemon_source_fallbacks_total"] == 1
    assert samples['dfly_daemon_download_bytes_total{source="source"}'] == len(refused)
    assert samples['dfly_daemon_downloads_total{result="success",reason=""}'] == 2
    assert samples['dfly_daemon_download_seconds_count{result="success"}'] == 2
    assert samples['dfly_daemon_downloads_total{result="failure",reason="SourceError"}'] == 1
    assert samples['dfly_daemon_download_seconds_count{result="failure"}'] == 1
    assert samples['dfly_daemon_proxy_requests_total{action="p2p",outcome="upstream"}'] == 1
    assert samples["dfly_daemon_cache_bytes"] == len(refused) + len(shared)
    assert samples["dfly_daemon_cache_limit_bytes"] == 200 * MiB
    assert samples["dfly_daemon_seeding_tasks"] == 1   # the P2P one; the fallback has no task
    assert samples["dfly_daemon_upload_bytes_total"] == 0
    assert samples["dfly_daemon_cache_served_bytes_total"] == 0
    assert fetch(running.address, "GET", shared_path)[2] == shared   # from the cache
    assert scrape(running.address)["dfly_daemon_cache_served_bytes_total"] == len(shared)
    # A peer takes piece 0 of the seeded task: what it read is what the daemon counts.
    (tid,) = running.p2p.seeding
    body = _piece(running, tid, 0)
    assert 0 < len(body) <= len(shared) and shared.startswith(body)
    wait_until(lambda: scrape(running.address)["dfly_daemon_upload_bytes_total"] == len(body),
               timeout=10, message="the piece counted as uploaded")


def _task_ids(supernode) -> list:
    client = SupernodeClient(supernode.address, timeout_s=5)
    try:
        return [t["task_id"] for t in client.tasks()]
    finally:
        client.close()


def _proxied_get(proxy_address: str, url: str) -> bytes:
    host, port = proxy_address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", url)
        return conn.getresponse().read()
    finally:
        conn.close()


def _piece(running, tid: str, num: int) -> bytes:
    host, port = running.p2p.uploader_address[:2]
    token = piecetoken.mint(running.p2p.secrets.keys()[0], tid, "reader", time.time())
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/v1/tasks/%s/pieces/%d?peer=reader" % (tid, num),
                     headers={piecetoken.HEADER: token})
        response = conn.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        conn.close()



@pytest.mark.time_limit(60)
def test_each_cluster_member_counts_the_tasks_it_serves_itself_too(origin, supernode_factory, tmp_path,
                                                                    client_factory, downloads):
    members = reserve_ports(2)
    settings = dict(cluster=[",".join(members)], cluster_secret="s3cret", member_dead_after_s=5.0)
    first = supernode_factory(data_dir=tmp_path / "a", listen=members[0], **settings)
    second = supernode_factory(data_dir=tmp_path / "b", listen=members[1], **settings)
    served = 'dfly_supernode_cluster_member_tasks{member="%s"}'
    for running, peer in ((first, members[1]), (second, members[0])):
        wait_until(lambda r=running, p=peer: scrape(r.address).get(served % p) == 0, timeout=10,
                   message="each member sees the other")
    src = origin.add("served.bin", content(2 * MiB, seed=27))
    client_factory([first.address], seed_for_s=60).download(src.url, str(downloads / "s.bin"))
    owner = rendezvous_owner(task_id(src.url), members)   # it serves the task; its seeder stays
    other = members[1 - members.index(owner)]
    assert scrape(owner)[served % owner] == 1
    assert scrape(owner)[served % other] == 0
    wait_until(lambda: scrape(other).get(served % owner) == 1, timeout=10,
               message="the other member heard it from the owner")


def _failed_count(samples: dict) -> float:
    return sum(v for k, v in samples.items() if k.startswith("dfly_supernode_tasks_failed_total{"))
