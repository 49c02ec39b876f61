"""Daemons in gossip mode (`dfly daemon --gossip`, no supernode), in-process on
their own loopback addresses: the registry mirror and the proxy work as with a
supernode (the registry and the origin serve each file once), and a daemon
holding a file announces it to the task's homes only."""
import http.client
import os

import pytest
from daemons import handoff_client
from helpers import MiB, content, run_all, sha256_file, wait_until
from registry import MISSING, Registry, build_image, dir_layers, mirror_conf, pull, push

from dfly.gossip.cluster import homes
from dfly.protocol.address import parse_address
from dfly.protocol.handoff import HandoffRequest
from dfly.protocol.task import task_id

KEY = "a cluster key of more than sixteen characters\n"


@pytest.fixture
def gossip_daemons(daemons, tmp_path):
    """start(count, **DaemonConfig fields) -> daemons on 127.0.0.7x joined by gossip,
    each scheduler seeing every other alive."""
    key = tmp_path / "gossip.key"
    key.write_text(KEY)

    def start(count, first_host=70, **settings):
        started = []
        for i in range(count):
            started.append(start_one(first_host + i, started[0] if started else None, **settings))
        wait_until(lambda: all(len(_alive(d)) == count for d in started), timeout=30,
                   message="every scheduler sees every other alive")
        return started

    def start_one(host_number, seed=None, **settings):
        host = "127.0.0.%d" % host_number
        join = ["%s:%d" % seed.gossip.address] if seed is not None else []
        return daemons.start(listen=host + ":0", upload_listen=host + ":0", gossip=True,
                             gossip_key_file=str(key), gossip_listen=host + ":0", gossip_profile="fast",
                             join=join, heartbeat_s=0.5, **settings)
    start.one = start_one
    return start


def _alive(running):
    return [m["member"] for m in running.scheduler.service.cluster_status()["members"] if m["alive"]]


def _scheduler_of(running) -> str:
    return running.scheduler.service.me


def _proxy_get(proxy_address: str, url: str):
    host, port = parse_address(proxy_address, 0)
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.skipif(bool(MISSING), reason=MISSING or "ok")
@pytest.mark.time_limit(120)
def test_the_registry_mirror_of_gossip_daemons_takes_each_blob_from_the_registry_once(
        tmp_path, gossip_daemons):
    registry = Registry(str(tmp_path / "registry"))
    try:
        image = build_image(str(tmp_path / "layout"), "v1", layer_sizes=(3 << 20, 1 << 20, 512 << 10))
        push(image, registry, "team/app")
        started = gossip_daemons(3, registry_mirror=registry.url)
        confs = [mirror_conf(str(tmp_path / ("registries%d.conf" % i)), registry, d.address)
                 for i, d in enumerate(started)]
        outcomes = run_all([lambda c=c, i=i: pull(c, registry, "team/app", "v1",
                                                  str(tmp_path / ("out%d" % i)))
                            for i, c in enumerate(confs)], timeout=90)
        assert [e for _, e in outcomes] == [None] * 3
        for i in range(3):
            assert dir_layers(str(tmp_path / ("out%d" % i))) == image.layers["amd64"]
        registry.settle()
        for digest in image.layers["amd64"]:
            assert len(registry.blob_gets(digest)) == 1, "blob %s left the registry more than once" % digest
    finally:
        registry.stop()


@pytest.mark.time_limit(90)
def test_the_proxy_of_two_gossip_daemons_takes_a_file_from_the_origin_once(origin, gossip_daemons):
    os.makedirs(os.path.join(origin.root, "big"), exist_ok=True)
    big = origin.add("big/file.bin", content(4 * MiB, seed=61))
    first, second = gossip_daemons(2, proxy_rule=["p2p /big/"])
    for running in (first, second):
        status, body = _proxy_get(running.address, big.url)
        assert status == 200 and body == big.data
    assert len([s for s in origin.served("big/file.bin") if s.method == "GET"]) == 1


@pytest.mark.time_limit(120)
def test_a_daemon_holding_a_file_announces_it_to_the_tasks_homes_not_to_everyone(
        origin, gossip_daemons, tmp_path):
    src = origin.add("held.bin", content(2 * MiB, seed=62))
    tid = task_id(src.url)
    started = gossip_daemons(5)
    home_set = homes(tid, [_scheduler_of(d) for d in started])
    holder = next(d for d in started if _scheduler_of(d) not in home_set)   # 2 of 5 are not homes
    target = str(tmp_path / "held.bin")
    handoff_client(holder).download(HandoffRequest(src.url, target), 30)
    assert sha256_file(target) == src.sha256
    assert origin.requests("held.bin") == 1
    assert _knowing(started, tid, holder.p2p.peer_id) == [home_set[0]]
    assert holder.p2p.seeding[tid] == home_set[0]
    _assert_unknown_outside_homes(started, tid)

    # Restarted on the same data dir (new ports): it offers what its cache holds again,
    # through its own scheduler, to whichever home owns the task in the new view (the
    # first home, unless the new scheduler took its place before it heard who serves it).
    data_dir = holder.data_dir
    started.remove(holder)
    holder.stop()
    again = gossip_daemons.one(79, started[0], data_dir=data_dir)
    started.append(again)
    wait_until(lambda: all(len(_alive(d)) == len(started) for d in started), timeout=30,
               message="every scheduler sees the restarted one")
    wait_until(lambda: tid in again.p2p.seeding, timeout=30, message="the cached file announced again")
    home_set = homes(tid, [_scheduler_of(d) for d in started])
    assert again.p2p.seeding[tid] in home_set
    assert set(_knowing(started, tid, again.p2p.peer_id)) <= set(home_set)
    _assert_unknown_outside_homes(started, tid, replicas=False)   # a former home keeps its copy


def _knowing(started, tid, peer_id):
    """The schedulers that have `peer_id` as a holder of task `tid`."""
    out = []
    for running in started:
        task = running.scheduler.service.loaded_task(tid)
        if task is not None and peer_id in task.scheduler.peers:
            out.append(_scheduler_of(running))
    return out


def _assert_unknown_outside_homes(started, tid, replicas=True):
    home_set = homes(tid, [_scheduler_of(d) for d in started])
    outside = [d for d in started if _scheduler_of(d) not in home_set]
    assert len(outside) == len(started) - 3
    for running in outside:
        assert running.scheduler.service.loaded_task(tid) is None, _scheduler_of(running)
        if replicas:
            assert running.scheduler.service.replicas.count(tid) == 0, _scheduler_of(running)
