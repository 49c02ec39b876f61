"""Publish/subscribe in a supernode cluster: every member keeps the whole publish
log (each copies the others'), so a daemon may poll any member; one that moves
to another member skips what it already fetched; a member that was down when
something was published has it once it is back."""
import os

import pytest
from helpers import MiB, content, reserve_ports, wait_until

from dfly.protocol.task import task_id
from dfly.supernode.client import SupernodeClient
from dfly.supernode.cluster import rendezvous_owner

TOKEN = "cluster-publish-token"
SECRET = "cluster-publish-secret-0123456789"


@pytest.fixture
def member(supernode_factory, tmp_path):
    path = tmp_path / "publish.token"
    path.write_text(TOKEN + "\n")

    def start(address, members):
        return supernode_factory(data_dir=tmp_path / address.replace(":", "_"), listen=address,
                                 cluster=[",".join(members)], cluster_secret=SECRET,
                                 member_dead_after_s=1.0, adopt_grace_s=0.5,
                                 preheat_token_file=str(path))
    return start


def _publish(address, url) -> int:
    client = SupernodeClient(address, timeout_s=10)
    try:
        job = client.publish({"url": url}, TOKEN)
        done = {}

        def over():
            done.update(client.preheat_job(job["id"], TOKEN))
            return done["state"] != "PENDING"
        wait_until(over, timeout=30)
        assert done["state"] == "SUCCESS", done
        return done["publication"]
    finally:
        client.close()


def _head(address) -> int:
    client = SupernodeClient(address, timeout_s=5)
    try:
        return client.subscriptions()["head"]
    finally:
        client.close()


def _holds(daemon, url) -> bool:
    return bool(daemon.cache.lookup("task-" + task_id(url)))


@pytest.mark.time_limit(120)
def test_every_member_gets_each_publication_and_a_daemon_moving_between_them_fetches_each_once(
        member, origin, daemons, tmp_path):
    a, b = reserve_ports(2)
    first, second = member(a, [a, b]), member(b, [a, b])
    origin.add("p/one.bin", content(MiB, seed=1))
    # published at B once A is stopped: a file B owns (a member stopped in-process
    # still answers the pings on its open connections, so B would not take A's over)
    two = next("p/two-%d.bin" % i for i in range(100)
               if rendezvous_owner(task_id(origin.url("p/two-%d.bin" % i)), [a, b]) == b)
    origin.add(two, content(MiB, seed=2))
    prefix = origin.url("p/")
    on_b = daemons.start(supernode=[b], subscribe=[prefix], subscribe_poll_s=1.0, subscribe_jitter_s=0.0)
    moving = daemons.start(supernode=[a, b], subscribe=[prefix], subscribe_poll_s=1.0,
                           subscribe_jitter_s=0.0)

    _publish(a, origin.url("p/one.bin"))
    wait_until(lambda: _head(b) == 1, timeout=20)   # B copied A's publication
    wait_until(lambda: _holds(on_b, origin.url("p/one.bin")) and _holds(moving, origin.url("p/one.bin")),
               timeout=30)

    first.stop()   # the moving daemon goes on at B, from B's own seq 0
    wait_until(lambda: b in moving.subscriber.view()["positions"], timeout=20)
    _publish(b, origin.url(two))
    wait_until(lambda: _holds(moving, origin.url(two)) and _holds(on_b, origin.url(two)), timeout=40)
    # the count moves just after the cache holds the file; one.bin, met again at B
    # in the same batch as two.bin or before it, would be counted with it
    wait_until(lambda: moving.subscriber.view()["delivered"] >= 2, timeout=10)
    view = moving.subscriber.view()
    assert view["delivered"] == 2, view   # one.bin, met again at B, was skipped by its id
    assert set(view["positions"]) == {a, b}
    assert origin.requests("p/one.bin") == 1

    back = member(a, [a, b])   # A was down for two.bin: it copies it from B
    wait_until(lambda: _head(a) == 2, timeout=20)
    assert os.path.exists(os.path.join(str(tmp_path / a.replace(":", "_")), "publications", "log.jsonl"))
    del back, second
