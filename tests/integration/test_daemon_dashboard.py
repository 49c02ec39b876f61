"""A daemon's own /dashboard: its cache, its seeding tasks, its proxy traffic,
with no secret from a proxied URL shown."""
import http.client
import json
import os

import pytest
from daemons import fetch
from helpers import MiB, content

from dfly.protocol.address import parse_address


def _via(proxy_address: str, url: str) -> int:
    host, port = parse_address(proxy_address, 0)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.time_limit(30)
def test_daemon_dashboard_shows_its_cache_seeding_and_proxy_traffic(origin, supernode, daemons):
    os.makedirs(os.path.join(origin.root, "big"), exist_ok=True)
    big = origin.add("big/file.bin", content(3 * MiB, seed=5))
    running = daemons.start(supernode=[supernode.address], proxy_rule=["p2p /big/"])
    assert _via(running.address, big.url + "?sig=s3cr3t") == 200
    assert _via(running.address, origin.url("big/missing.bin")) >= 400

    status, headers, body = fetch(running.address, "GET", "/v1/dashboard")
    assert status == 200
    feed = json.loads(body)
    assert "s3cr3t" not in body.decode()
    assert feed["peer_id"] == running.p2p.peer_id
    [entry] = feed["cache"]["entries"]
    assert entry["size"] == big.size and feed["cache"]["bytes"] == big.size
    [seed] = feed["seeding"]
    assert seed["task_id"] == entry["task_id"] != ""
    counts = {(c["kind"], c["outcome"]): c["requests"] for c in feed["traffic"]["counts"]}
    assert counts[("proxy", "ok")] == 1 and sum(counts.values()) == 2
    assert feed["traffic"]["recent"][0]["target"].endswith("file.bin?sig=***")

    status, headers, body = fetch(running.address, "GET", "/dashboard")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"/v1/dashboard" in body and b"<script src" not in body
