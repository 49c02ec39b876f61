"""Publish/subscribe with real parts: a supernode with its publish log under
tmp_path, daemons subscribed on 127.0.0.1:0, a real origin; each publish must
end in every subscribed daemon's cache, through P2P (the origin sends the file
once), and survive a daemon's and the supernode's restarts."""
import os
import threading
from types import SimpleNamespace

import pytest
from daemons import fetch
from helpers import MiB, content, wait_until

from dfly.errors import BadRequest, DflyError, P2PUnavailable
from dfly.peer import subscriber as subscriber_module
from dfly.peer.daemon_config import DaemonConfig
from dfly.peer.subscriber import Subscriber
from dfly.protocol.task import task_id
from dfly.supernode.client import PeerSecrets, SupernodeClient

TOKEN = "publish-token-for-tests"


@pytest.fixture
def publishing(tmp_path, supernode_factory):
    """start(data_dir=None) -> (a supernode with publish on, its client); restartable."""
    path = tmp_path / "publish.token"
    path.write_text(TOKEN + "\n")
    clients = []

    def start(**settings):
        settings.setdefault("data_dir", tmp_path / "supernode")
        running = supernode_factory(preheat_token_file=str(path), **settings)
        client = SupernodeClient(running.address, timeout_s=10)
        clients.append(client)
        return running, client

    yield start
    for client in clients:
        client.close()


def _subscribed(daemons, supernode, topic, **settings):
    settings.setdefault("subscribe_poll_s", 1.0)
    settings.setdefault("subscribe_jitter_s", 0.0)
    return daemons.start(supernode=[supernode.address], subscribe=[topic], **settings)


def _publish(client, url) -> dict:
    """Publish `url` and wait for its job; the finished job."""
    job = client.publish({"url": url}, TOKEN)
    done = {}

    def over():
        done.update(client.preheat_job(job["id"], TOKEN))
        return done["state"] != "PENDING"
    wait_until(over, timeout=30)
    assert done["state"] == "SUCCESS", done
    return done


def _row(client, daemon) -> dict:
    """The daemon's row in GET /v1/subscriptions."""
    return next(r for r in client.subscriptions()["subscriptions"]
                if r["subscriber"] == daemon.subscriber.subscriber_id)


def _cached(daemon, url) -> str:
    return daemon.cache.lookup("task-" + task_id(url)) or ""


def _holds(daemon, url, data) -> bool:
    path = _cached(daemon, url)
    if not path:
        return False
    with open(path, "rb") as f:
        return f.read() == data


@pytest.mark.time_limit(60)
def test_one_publish_reaches_every_subscribed_daemon_and_the_origin_sends_it_once(
        origin, publishing, daemons):
    supernode, client = publishing()
    data = content(3 * MiB, seed=1)
    origin.add("models/one.bin", data)
    url = origin.url("models/one.bin")
    prefix = origin.url("models/")
    subscribers = [_subscribed(daemons, supernode, prefix) for _ in range(3)]
    other = _subscribed(daemons, supernode, origin.url("elsewhere/"))
    by_name = _subscribed(daemons, supernode, "127.0.0.1:%d/models/*" % origin.address[1])
    everything = _subscribed(daemons, supernode, "*")
    wait_until(lambda: len(client.subscriptions()["subscriptions"]) == 6, timeout=10)

    job = _publish(client, url)
    assert isinstance(job["publication"], int)
    wait_until(lambda: all(_holds(d, url, data) for d in subscribers + [by_name, everything]), timeout=30)
    assert _cached(other, url) == "", "a daemon got an item its topics do not take"
    assert origin.body_bytes("models/one.bin") == len(data), "the origin sent the file more than once"
    rows = {r["subscriber"]: r for r in client.subscriptions()["subscriptions"]}
    wait_until(lambda: all(r["acknowledged"] == r["head"] for r in
                           client.subscriptions()["subscriptions"]), timeout=10)
    assert rows[subscribers[0].subscriber.subscriber_id]["topics"] == [prefix]
    status, _, body = fetch(subscribers[0].address, "GET", "/metrics")
    assert status == 200 and 'dfly_daemon_publications_total{outcome="delivered"} 1' in body.decode()


@pytest.mark.time_limit(90)
def test_a_daemon_down_during_a_publish_catches_up_when_it_is_back(origin, publishing, daemons, tmp_path):
    supernode, client = publishing()
    first, second = content(MiB, seed=2), content(MiB, seed=3)
    origin.add("a/first.bin", first)
    origin.add("a/second.bin", second)
    prefix = origin.url("a/")
    stays = _subscribed(daemons, supernode, prefix)
    folder = str(tmp_path / "comes-back")
    leaves = _subscribed(daemons, supernode, prefix, data_dir=folder)
    _publish(client, origin.url("a/first.bin"))
    wait_until(lambda: _holds(leaves, origin.url("a/first.bin"), first), timeout=30)
    wait_until(lambda: _row(client, leaves)["acknowledged"] == 1, timeout=10)   # its next poll says so
    daemons.stop(leaves)

    _publish(client, origin.url("a/second.bin"))
    wait_until(lambda: _holds(stays, origin.url("a/second.bin"), second), timeout=30)
    row = _row(client, leaves)
    assert (row["acknowledged"], row["head"], row["behind"]) == (1, 2, 1)
    back = _subscribed(daemons, supernode, prefix, data_dir=folder)
    wait_until(lambda: _holds(back, origin.url("a/second.bin"), second), timeout=30)
    assert origin.body_bytes("a/second.bin") == len(second)
    state = os.path.join(folder, "daemon", "subscriptions.json")
    assert os.stat(state).st_mode & 0o777 == 0o600, "the file holds the subscriber's secrets"
    # the same subscriber as before its restart: one row, caught up
    assert back.subscriber.subscriber_id == row["subscriber"]
    wait_until(lambda: _row(client, back)["acknowledged"] == 2, timeout=10)
    # counted before it is acknowledged (the count moves just after the cache holds the file)
    assert back.subscriber.view()["delivered"] == 1, "the first publication was delivered again"
    assert len(client.subscriptions()["subscriptions"]) == 2


@pytest.mark.time_limit(90)
def test_the_publish_log_survives_a_supernode_restart(origin, publishing, daemons, tmp_path):
    supernode, client = publishing()
    data = content(MiB, seed=4)
    origin.add("b/kept.bin", data)
    _publish(client, origin.url("b/kept.bin"))
    supernode.stop()
    again, client = publishing()
    late = _subscribed(daemons, again, origin.url("b/"))
    wait_until(lambda: _holds(late, origin.url("b/kept.bin"), data), timeout=30)
    assert client.subscriptions()["head"] == 1
    data2 = content(MiB, seed=5)
    origin.add("b/next.bin", data2)
    assert _publish(client, origin.url("b/next.bin"))["publication"] == 2, "a seq was reused"
    wait_until(lambda: _holds(late, origin.url("b/next.bin"), data2), timeout=30)


def test_a_malformed_publish_is_refused_naming_the_field(publishing):
    _, client = publishing()
    for body, field in [({"url": 5}, "'url'"), ({"type": "tarball", "url": "http://127.0.0.1/x"}, "'type'"),
                        ({"url": "http://127.0.0.1/x", "headers": []}, "'headers'"),
                        ({"url": "http://127.0.0.1/x", "scope": "all"}, "'scope'"),
                        ({"type": "image", "url": "http://127.0.0.1/x"}, "'url'"),
                        ({"url": "http://127.0.0.1/x", "platform": "amd64"}, "'platform'")]:
        with pytest.raises(BadRequest) as e:
            client.publish(body, TOKEN)
        assert field in str(e.value), (body, str(e.value))
    with pytest.raises(DflyError, match="wrong preheat token"):
        SupernodeClient(client.address, timeout_s=5).publish({"url": "http://127.0.0.1/x"}, "wrong")


def test_a_poll_with_a_bad_or_pathological_topic_is_refused_or_answered_at_once(publishing):
    _, client = publishing()
    with pytest.raises(BadRequest) as e:
        client.publications("peer-1", 0, ["a b"], 0)
    assert "'topics'" in str(e.value)
    with pytest.raises(BadRequest):
        client.publications("peer-1", 0, ["*"] * 40, 0)
    with pytest.raises(BadRequest):
        client.publications("peer-1", 0, ["*a" * 30 + "b"], 0)
    reply = client.publications("peer-1", 0, ["*a" * 16 + "b"], 0)
    assert reply["publications"] == [] and reply["next"] == 0


def test_the_log_drops_a_line_cut_short_by_a_crash(publishing, origin, tmp_path):
    supernode, client = publishing()
    data = content(64 << 10, seed=6)
    origin.add("c/x.bin", data)
    _publish(client, origin.url("c/x.bin"))
    supernode.stop()
    log_path = os.path.join(str(tmp_path / "supernode"), "publications", "log.jsonl")
    with open(log_path, "ab") as f:
        f.write(b'{"seq": 2, "id": "cut')
    again, client = publishing()
    reply = client.publications("peer-2", 0, [origin.url("c/")], 0)
    assert [p["seq"] for p in reply["publications"]] == [1]
    with open(log_path, "rb") as f:
        assert f.read().count(b"\n") == 1


class _Cache:
    """A daemon cache that cannot get `bad` (as when the cluster cannot deliver it)."""

    def __init__(self, bad: str):
        self.bad = bad
        self.asked = []

    def obtain(self, key, fill, timeout_s):
        self.asked.append(key)
        if key == self.bad:
            raise P2PUnavailable("no supernode could deliver it")
        return "/cached/" + key


@pytest.mark.time_limit(60)
def test_a_publication_that_keeps_failing_is_given_up_and_does_not_hold_back_the_next(
        origin, publishing, tmp_path):
    supernode, client = publishing()
    for name in ("d/bad.bin", "d/good.bin"):
        origin.add(name, content(1000, seed=7))
        _publish(client, origin.url(name))
    bad = "task-" + task_id(origin.url("d/bad.bin"))
    daemon = SimpleNamespace(config=DaemonConfig(supernode=[supernode.address], fetch_timeout_s=5.0),
                             data_dir=str(tmp_path / "fake"), stopping=threading.Event(),
                             p2p=SimpleNamespace(peer_id="fake-daemon", tls=None, secrets=PeerSecrets()),
                             cache=_Cache(bad))
    subscriber = Subscriber(daemon, [origin.url("d/")], concurrency=1, jitter_s=0.0, poll_s=1.0)
    subscriber.retry_pause_s = 0.05
    subscriber.start()
    try:
        wait_until(lambda: subscriber.view()["positions"].get(supernode.address) == 2, timeout=20)
    finally:
        daemon.stopping.set()
        subscriber.stop()
    view = subscriber.view()
    assert (view["delivered"], view["given_up"]) == (1, 1), view
    assert daemon.cache.asked.count(bad) == subscriber_module.MAX_ATTEMPTS


@pytest.mark.time_limit(60)
def test_two_supernodes_that_are_no_cluster_name_their_publications_apart(
        origin, publishing, daemons, tmp_path):
    """Fallback supernodes (not one cluster) each keep a log of their own; their
    seq 1 are two publications, and a daemon moving from one to the other gets both."""
    first, first_client = publishing(data_dir=tmp_path / "sn1")
    second, second_client = publishing(data_dir=tmp_path / "sn2")
    for name, client in (("e/one.bin", first_client), ("e/two.bin", second_client)):
        origin.add(name, content(100_000, seed=len(name)))
        assert _publish(client, origin.url(name))["publication"] == 1
    daemon = daemons.start(supernode=[first.address, second.address], subscribe=[origin.url("e/")],
                           subscribe_poll_s=1.0, subscribe_jitter_s=0.0)
    wait_until(lambda: _cached(daemon, origin.url("e/one.bin")), timeout=20)
    first.stop()
    wait_until(lambda: _cached(daemon, origin.url("e/two.bin")), timeout=30)


@pytest.mark.time_limit(60)
def test_publications_past_the_retention_window_are_missed_and_said_so(origin, publishing, daemons):
    supernode, client = publishing(publication_keep_count=1)
    for name in ("f/old.bin", "f/new.bin"):
        origin.add(name, content(50_000, seed=len(name)))
        _publish(client, origin.url(name))
    view = client.subscriptions()
    assert (view["head"], view["first"], view["retained"]) == (2, 2, 1)
    late = _subscribed(daemons, supernode, origin.url("f/"))
    wait_until(lambda: _cached(late, origin.url("f/new.bin")), timeout=20)
    assert late.subscriber.view()["missed"] == 1
    assert not _cached(late, origin.url("f/old.bin"))


@pytest.mark.time_limit(60)
def test_a_daemon_with_a_damaged_subscription_file_starts_afresh(origin, publishing, daemons, tmp_path):
    supernode, client = publishing()
    origin.add("g/x.bin", content(10_000, seed=8))
    _publish(client, origin.url("g/x.bin"))
    folder = tmp_path / "damaged"
    (folder / "daemon").mkdir(parents=True)
    (folder / "daemon" / "subscriptions.json").write_text('{"positions": {"a": "x"}, "done": 5, "subscr')
    daemon = _subscribed(daemons, supernode, origin.url("g/"), data_dir=str(folder))
    wait_until(lambda: _cached(daemon, origin.url("g/x.bin")), timeout=20)
