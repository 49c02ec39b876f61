"""The supernode's dashboard page and JSON feed, over a real small swarm."""
import json
import urllib.request

import pytest
from helpers import MiB, content, reserve_ports, run_all, wait_until

from dfly.protocol.messages import Failure, RegisterRequest, ScheduleRequest
from dfly.protocol.task import task_id
from dfly.supernode.client import SupernodeClient
from dfly.supernode.cluster import rendezvous_owner
from dfly.supernode.dashboard import HELD


def _get(address: str, path: str):
    with urllib.request.urlopen("http://%s%s" % (address, path), timeout=10) as reply:
        return reply.status, dict(reply.headers), reply.read()


def _feed(address: str, task_id: str = "", offset: int = 0, limit: int = 50) -> dict:
    """The feed through the supernode's own client (as the page sees it)."""
    client = SupernodeClient(address, timeout_s=10)
    try:
        return client.dashboard(task_id, offset, limit)
    finally:
        client.close()


@pytest.mark.time_limit(60)
def test_feed_shows_the_task_its_peers_and_where_their_bytes_came_from(
        origin, supernode, client_factory, downloads):
    src = origin.add("dash.bin", content(12 * MiB, seed=7))
    url = src.url + "?token=s3cr3t"   # a signed URL's secret: never shown
    clients = [client_factory([supernode.address], seed_for_s=60) for _ in range(3)]
    outcomes = run_all([lambda c=c, i=i: c.download(url, str(downloads / ("d%d" % i)),
                                                      digest=src.digest)
                        for i, c in enumerate(clients)], timeout=50)
    assert all(e is None for _, e in outcomes), outcomes

    feed = _feed(supernode.address)
    [task] = feed["tasks"]
    assert task["state"] == "done" and task["length"] == src.size
    assert "s3cr3t" not in json.dumps(feed)   # the URL's query is redacted
    detail = feed["task"]
    assert detail["task_id"] == task["task_id"] and detail["totals"]["peers"] == 3
    assert detail["totals"]["peers_done"] == 3
    count = detail["piece_count"]
    assert detail["supernode"]["map"] == HELD * count
    for peer in detail["peers"]:
        assert peer["map"] == HELD * count and peer["progress"] == 1.0
        assert peer["bytes_from_supernode"] + peer["bytes_from_peers"] == src.size
        assert peer["rate_bytes_per_s"] > 0
    results = [r for r, _ in outcomes]
    assert detail["totals"]["bytes_from_peers"] == sum(r.bytes_from_peers for r in results)
    assert task["bytes_from_supernode"] == sum(r.bytes_from_supernode for r in results)

    page = _feed(supernode.address, task["task_id"], offset=1, limit=1)["task"]
    assert len(page["peers"]) == 1 and page["totals"]["peers"] == 3 and page["offset"] == 1


def test_dashboard_page_is_one_self_contained_html_page(supernode):
    status, headers, body = _get(supernode.address, "/dashboard")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    text = body.decode()
    assert "/v1/dashboard" in text and "http://" not in text and "https://" not in text
    assert "<script src" not in text and "<link" not in text


def test_feed_of_an_idle_supernode_is_empty_not_an_error(supernode):
    bad = json.loads(_get(supernode.address, "/v1/dashboard?task=nosuch&offset=x&limit=-1")[2])
    feed = _feed(supernode.address)
    assert bad == dict(feed, at=bad["at"])   # junk in the query is the defaults
    assert feed["tasks"] == [] and feed["task"] is None
    assert feed["cluster"]["members"] == [] and feed["events"] == []


def test_dashboard_is_read_only(supernode):
    request = urllib.request.Request("http://%s/v1/dashboard" % supernode.address, data=b"{}",
                                     method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 405


def _events(address: str, kind: str) -> list:
    return [e for e in _feed(address)["events"] if e["kind"] == kind]


@pytest.mark.time_limit(30)
def test_events_name_a_failed_task_without_its_secret(origin, supernode, sn_client):
    url = origin.url("missing.bin") + "?sig=s3cr3t"
    tid, _ = sn_client.register(RegisterRequest(url=url, peer_id="asker", peer_port=9,
                                                peer_host="127.0.0.1"))
    [event] = wait_until(lambda: _events(supernode.address, "task_failed"), timeout=20,
                         message="the failure is an event")
    assert event["task_id"] == tid and "SourceError" in event["text"]
    assert "s3cr3t" not in json.dumps(_feed(supernode.address))


@pytest.mark.time_limit(30)
def test_events_name_a_peer_blacklisted_after_failing_five_askers(origin, supernode, sn_client):
    src = origin.add("shared.bin", content(2 * MiB, seed=8))
    holder = SupernodeClient(supernode.address, timeout_s=5)
    askers = [SupernodeClient(supernode.address, timeout_s=5) for _ in range(5)]
    try:
        tid, _ = holder.register(RegisterRequest(url=src.url, peer_id="holder", peer_port=9,
                                                 peer_host="127.0.0.1"))
        wait_until(lambda: sn_client.task(tid)["state"] == "done", timeout=20)
        for i, asker in enumerate(askers):
            holder.schedule(tid, ScheduleRequest("holder", done=[0, 1], want=0))   # it lives
            asker.register(RegisterRequest(url=src.url, peer_id="asker%d" % i, peer_port=9,
                                           peer_host="127.0.0.1"))
            got = asker.schedule(tid, ScheduleRequest("asker%d" % i, want=1))
            [order] = got.pieces
            assert order.holder == "holder"
            asker.schedule(tid, ScheduleRequest("asker%d" % i, want=0,
                                                failed=[Failure(order.num, "holder", "digest mismatch")]))
        [event] = _events(supernode.address, "peer_blacklisted")
        assert event["task_id"] == tid and "holder" in event["text"]
    finally:
        for client in [holder] + askers:
            client.close()


@pytest.mark.time_limit(30)
def test_events_name_a_member_lost_and_back(supernode_factory, tmp_path):
    first, second = reserve_ports(2)
    members = [first, second]

    def start(address):
        return supernode_factory(data_dir=tmp_path / address.replace(":", "_"), listen=address,
                                 cluster=[",".join(members)], cluster_secret="s3cret-for-the-test",
                                 member_dead_after_s=1.0)
    start(first)
    [lost] = wait_until(lambda: _events(first, "member_down"), timeout=10, message="member lost")
    assert second in lost["text"]
    start(second)
    [back] = wait_until(lambda: _events(first, "member_up"), timeout=10, message="member back")
    assert second in back["text"]
    members_shown = {m["member"]: m["alive"] for m in _feed(first)["cluster"]["members"]}
    assert members_shown == {first: True, second: True}


@pytest.mark.time_limit(60)
def test_events_name_a_task_taken_over_from_a_lost_member(origin, supernode_factory, client_factory,
                                                          tmp_path, downloads):
    members = reserve_ports(2)

    def start(address):
        return supernode_factory(data_dir=tmp_path / address.replace(":", "_"), listen=address,
                                 cluster=[",".join(members)], cluster_secret="s3cret-for-the-test",
                                 member_dead_after_s=1.0)
    first, second = start(members[0]), start(members[1])
    name = next(n for n in ("f%d.bin" % i for i in range(100))
                if rendezvous_owner(task_id(origin.url(n)), members) == members[0])
    src = origin.add(name, content(2 * MiB, seed=31))
    client_factory([first.address], seed_for_s=0).download(src.url, str(downloads / "a"))
    tid = task_id(src.url)
    wait_until(lambda: tid in second.service.replicas.ids(), timeout=10, message="the replica pushed")
    first.stop()
    wait_until(lambda: _events(second.address, "member_down"), timeout=10, message="the owner lost")
    client_factory([second.address], seed_for_s=0).download(src.url, str(downloads / "b"))
    [taken] = _events(second.address, "task_taken_over")
    assert taken["task_id"] == tid and "replica" in taken["text"]
