"""The supernode's dashboard page and JSON feed, over a real small swarm."""
import json
import urllib.request

import pytest
from helpers import MiB, content, run_all

from dfly.supernode.dashboard import HELD


def _get(address: str, path: str):
    with urllib.request.urlopen("http://%s%s" % (address, path), timeout=10) as reply:
        return reply.status, dict(reply.headers), reply.read()


def _feed(address: str, query: str = "") -> dict:
    return json.loads(_get(address, "/v1/dashboard" + query)[2])


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

    page = _feed(supernode.address, "?task=%s&offset=1&limit=1" % task["task_id"])["task"]
    assert len(page["peers"]) == 1 and page["totals"]["peers"] == 3 and page["offset"] == 1


def test_dashboard_page_is_one_self_contained_html_page(supernode):
    status, headers, body = _get(supernode.address, "/dashboard")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    text = body.decode()
    assert "/v1/dashboard" in text and "http://" not in text and "https://" not in text
    assert "<script src" not in text and "<link" not in text


def test_feed_of_an_idle_supernode_is_empty_not_an_error(supernode):
    feed = _feed(supernode.address, "?task=nosuch&offset=x&limit=-1")
    assert feed["tasks"] == [] and feed["task"] is None
    assert feed["cluster"]["members"] == [] and feed["events"] == []


def test_dashboard_is_read_only(supernode):
    request = urllib.request.Request("http://%s/v1/dashboard" % supernode.address, data=b"{}",
                                     method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 405
