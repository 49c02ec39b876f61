"""Who sees task URLs in the supernode's listings: callers on its own host (its
operator) and, for one task, a peer of that task; a caller from elsewhere sees
ids, sizes and states, not URLs. Run in a network namespace of the test's own,
with a non-loopback address (10.203.0.1) on its loopback interface to call from."""
import http.client
import json
import subprocess

import pytest
from fuzz import private_network, why_no_private_network
from helpers import MiB, content, wait_until

from dfly.protocol.messages import PEER_SECRET_HEADER, RegisterRequest
from dfly.supernode.client import SupernodeClient

OUTSIDE = "10.203.0.1"   # exists only inside the test's own network namespace

pytestmark = pytest.mark.skipif(bool(why_no_private_network()), reason=why_no_private_network())


@pytest.fixture(autouse=True)
def private_net():
    with private_network():
        subprocess.run(["ip", "addr", "add", OUTSIDE + "/32", "dev", "lo"], check=True, timeout=10)
        yield


def _get(port, path, headers=None):
    conn = http.client.HTTPConnection(OUTSIDE, port, timeout=10, source_address=(OUTSIDE, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


@pytest.mark.time_limit(30)
def test_task_urls_are_shown_to_the_supernodes_host_and_the_tasks_peers_only(
        origin, supernode_factory):
    supernode = supernode_factory(listen="0.0.0.0:0")
    port = supernode.listener.address[1]
    src = origin.add("listed.bin", content(MiB, seed=61))
    url = src.url + "?token=abc"
    local = SupernodeClient("127.0.0.1:%d" % port, timeout_s=10)
    try:
        tid, _ = local.register(RegisterRequest(url=url, peer_id="here", peer_port=9))
        wait_until(lambda: local.task(tid)["state"] == "done", timeout=10)
        assert local.task(tid)["url"] == src.url + "?token=***"   # the operator, on the host
        assert [t["url"] for t in local.tasks()] == [src.url + "?token=***"]
    finally:
        local.close()

    assert _get(port, "/v1/tasks/" + tid)["url"] is None   # a caller from elsewhere
    assert [t["url"] for t in _get(port, "/v1/tasks")["tasks"]] == [None]
    assert _get(port, "/v1/tasks/%s?peer=here" % tid, {PEER_SECRET_HEADER: "a guess"})["url"] is None

    remote = SupernodeClient("%s:%d" % (OUTSIDE, port), timeout_s=10)
    try:   # a peer of the task, proving its id, sees that task's URL
        remote.register(RegisterRequest(url=url, peer_id="there", peer_port=9))
        shown = _get(port, "/v1/tasks/%s?peer=there" % tid, {PEER_SECRET_HEADER: remote.peer_secret})
        assert shown["url"] == src.url + "?token=***"
    finally:
        remote.close()


@pytest.mark.time_limit(30)
def test_dashboard_feed_shows_task_urls_and_failures_to_the_supernodes_host_only(
        origin, supernode_factory):
    supernode = supernode_factory(listen="0.0.0.0:0")
    port = supernode.listener.address[1]
    url = origin.url("gone.bin") + "?token=abc"   # a 404: a failed task, an event naming it
    local = SupernodeClient("127.0.0.1:%d" % port, timeout_s=10)
    try:
        tid, _ = local.register(RegisterRequest(url=url, peer_id="here", peer_port=9))
        wait_until(lambda: local.task(tid)["state"] == "failed", timeout=10)
        mine = local.dashboard()
        assert [t["url"] for t in mine["tasks"]] == [origin.url("gone.bin") + "?token=***"]
        assert "gone.bin" in mine["events"][-1]["text"]
    finally:
        local.close()

    theirs = _get(port, "/v1/dashboard")   # a caller from elsewhere
    assert [(t["url"], t["error"]) for t in theirs["tasks"]] == [(None, "failed")]
    assert "gone.bin" not in json.dumps(theirs) and theirs["events"][-1]["kind"] == "task_failed"
    assert [p["addr"] for p in theirs["task"]["peers"]] == [None]   # no holder addresses either
    assert [p["peer_id"] for p in theirs["task"]["peers"]] == ["here"]
