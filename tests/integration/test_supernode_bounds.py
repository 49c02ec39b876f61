"""What one client can make a supernode do is bounded: the pieces it claims and
never fetches, the tasks it registers, the fetch threads and folders those
leave behind."""
import http.client
import json
import os
import threading
import time

import pytest
from helpers import MiB, content, wait_until

from dfly.protocol.address import parse_address
from dfly.protocol.messages import SUPERNODE, RegisterRequest, ScheduleRequest
from dfly.supernode.client import SupernodeClient, SupernodeDown
from dfly.supernode.fetchpool import FetchPool


def _peer(supernode, url, peer_id):
    client = SupernodeClient(supernode.address, timeout_s=10)
    tid, _ = client.register(RegisterRequest(url=url, peer_id=peer_id, peer_port=9,
                                             peer_host="127.0.0.1"))
    return client, tid


@pytest.mark.time_limit(40)
def test_a_peer_that_claims_every_supernode_slot_and_never_fetches_stalls_others_for_seconds_only(
        origin, supernode_factory):
    # the default 5 s, shorter; no fan-out, which would give the hoarder only its share
    # of the slots (half, with two peers)
    supernode = supernode_factory(assignment_start_timeout_s=2.0, fanout=0)
    src = origin.add("big.bin", content(8 * MiB, seed=9))
    hoarder, tid = _peer(supernode, src.url, "hoarder")
    honest, _ = _peer(supernode, src.url, "honest")
    try:
        wait_until(lambda: hoarder.task(tid)["state"] == "done", message="the source fetched")
        claimed = hoarder.schedule(tid, ScheduleRequest("hoarder", want=64)).pieces
        assert [p.holder for p in claimed] == [SUPERNODE] * 4   # every upload slot
        assert honest.schedule(tid, ScheduleRequest("honest", want=4)).pieces == []
        began = time.monotonic()
        got = wait_until(lambda: honest.schedule(tid, ScheduleRequest("honest", want=4,
                                                                      wait_s=2.0)).pieces,
                         timeout=15, message="slots released")
        assert {p.holder for p in got} == {SUPERNODE}
        assert time.monotonic() - began < 15   # not the 60 s assignment timeout
    finally:
        hoarder.close()
        honest.close()


def _fetch_threads(before=()):
    """Source fetch threads (today's pool, or yesterday's one per task), but those in `before`."""
    return [t for t in threading.enumerate()
            if t.name.startswith(("source-fetch", "fetch-")) and t not in before]


def test_new_tasks_from_one_client_are_limited_per_minute_and_others_still_register(
        origin, supernode_factory):
    supernode = supernode_factory(max_new_tasks_per_client=5)
    for i in range(5):
        origin.add("f%d" % i, content(1000, seed=i))
    flood = SupernodeClient(supernode.address, timeout_s=10)
    try:
        for i in range(5):
            flood.register(RegisterRequest(url=origin.url("f%d" % i), peer_id="p", peer_port=9))
        with pytest.raises(SupernodeDown, match="new tasks a minute"):
            flood.register(RegisterRequest(url=origin.url("f-extra"), peer_id="p", peer_port=9))
        flood.register(RegisterRequest(url=origin.url("f0"), peer_id="p", peer_port=9))   # not new
    finally:
        flood.close()
    status, reply = _register_from(supernode, "127.0.0.2", origin.url("f-other"))
    assert status == 200, reply   # another client has its own budget


def _register_from(supernode, source, url):
    host, port = parse_address(supernode.address, 0)
    conn = http.client.HTTPConnection(host, port, timeout=10, source_address=(source, 0))
    try:
        body = {"url": url, "peer": {"id": "other", "port": 9}}
        conn.request("POST", "/v1/tasks", json.dumps(body).encode(), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.time_limit(30)
def test_sources_are_fetched_by_a_bounded_pool_of_threads(origin, supernode_factory):
    supernode = supernode_factory(max_source_fetches=2)
    hold = threading.Event()
    for i in range(8):
        origin.add("slow%d" % i, content(1000, seed=i))
        origin.fault("slow%d" % i, hold=hold)
    client = SupernodeClient(supernode.address, timeout_s=10)
    before = set(_fetch_threads())   # other tests' supernodes may still finish a fetch
    try:
        tids = [client.register(RegisterRequest(url=origin.url("slow%d" % i), peer_id="p",
                                                peer_port=9))[0] for i in range(8)]
        wait_until(lambda: len(_fetch_threads(before)) >= 2, message="two fetchers")
        assert len(_fetch_threads(before)) == 2   # not one thread per task
        hold.set()
        wait_until(lambda: all(client.task(t)["state"] == "done" for t in tids), timeout=20,
                   message="every queued task fetched in turn")
        assert len(_fetch_threads(before)) <= 2
    finally:
        hold.set()
        client.close()


@pytest.mark.time_limit(30)
def test_failed_tasks_without_peers_are_pruned_with_their_folders(origin, supernode_factory, tmp_path):
    supernode = supernode_factory(data_dir=tmp_path / "sn", failure_ttl_s=0.2)
    client = SupernodeClient(supernode.address, timeout_s=10)
    try:
        tids = []
        for i in range(10):
            peer = "p%d" % i
            tid, _ = client.register(RegisterRequest(url=origin.url("missing%d" % i), peer_id=peer,
                                                     peer_port=9))
            wait_until(lambda t=tid: client.task(t)["state"] == "failed", message="404 seen")
            client.leave(tid, peer)
            tids.append(tid)
        wait_until(lambda: client.tasks() == [], timeout=15, message="failed tasks pruned")
        assert os.listdir(str(tmp_path / "sn" / "tasks")) == []
        trash = str(tmp_path / "sn" / "trash")
        wait_until(lambda: not os.path.exists(trash) or os.listdir(trash) == [],
                   message="their folders removed")
    finally:
        client.close()


@pytest.mark.time_limit(30)
def test_an_idle_finished_task_leaves_memory_but_stays_cached(origin, supernode_factory, tmp_path):
    src = origin.add("kept.bin", content(MiB, seed=4))
    supernode = supernode_factory(data_dir=tmp_path / "sn", task_idle_ttl_s=0.5)
    client = SupernodeClient(supernode.address, timeout_s=10)
    try:
        tid, _ = client.register(RegisterRequest(url=src.url, peer_id="p", peer_port=9))
        wait_until(lambda: client.task(tid)["state"] == "done", message="fetched")
        client.leave(tid, "p")
        wait_until(lambda: client.tasks() == [], timeout=15, message="idle task pruned")
        assert os.listdir(str(tmp_path / "sn" / "tasks")) == [tid]   # still the cache
        requests = origin.requests("kept.bin")
        client.register(RegisterRequest(url=src.url, peer_id="q", peer_port=9))
        wait_until(lambda: client.task(tid)["state"] == "done", message="served from cache")
        assert origin.body_bytes("kept.bin") == MiB   # revalidated, not fetched again
        assert origin.requests("kept.bin") == requests + 1
    finally:
        client.close()


def test_a_fetch_that_raises_leaves_its_pool_thread_to_the_next_fetch():
    """What a fetch's thread does after its task is done (the cache eviction, which
    another thread's eviction or prune can race: a folder gone between its listing
    and its reading) must not end the thread: the pool never starts another."""
    pool = FetchPool(max_threads=1, per_client=0, name="test-fetch")
    ran = threading.Event()

    def broken():
        raise FileNotFoundError("a task folder evicted meanwhile")
    try:
        pool.submit("127.0.0.1", broken)
        pool.submit("127.0.0.1", ran.set)
        assert ran.wait(10), "the pool's only thread ended with the first fetch"
    finally:
        pool.close()


@pytest.mark.time_limit(30)
def test_a_client_with_slow_sources_fills_only_its_share_of_the_fetch_pool(origin, supernode_factory):
    supernode = supernode_factory(max_source_fetches=3, max_source_fetches_per_client=2)
    hold = threading.Event()
    for i in range(4):
        origin.add("slow%d" % i, content(1000, seed=i))
        origin.fault("slow%d" % i, hold=hold)   # a source that does not answer for now
    quick = origin.add("quick", content(1000, seed=9))
    greedy = SupernodeClient(supernode.address, timeout_s=10)
    try:
        slow = [greedy.register(RegisterRequest(url=origin.url("slow%d" % i), peer_id="g",
                                                peer_port=9))[0] for i in range(4)]
        status, reply = _register_from(supernode, "127.0.0.2", quick.url)
        assert status == 200, reply
        wait_until(lambda: greedy.task(reply["task_id"])["state"] == "done", timeout=10,
                   message="another client's source fetched while the greedy one's hang")
        assert [greedy.task(t)["state"] for t in slow].count("pending") >= 2   # waiting their turn
    finally:
        hold.set()
        greedy.close()
