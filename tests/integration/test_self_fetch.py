"""A supernode made to fetch its own API as a source (a registered URL, or a
redirect to one) is a caller like any other there: the listing it gets shows no
task URLs and the dashboard feed no URLs nor peer addresses. Its requests come
from its own host, which the listings trust as the operator, so without the
mark every source fetch carries, anyone who may register a URL read back what
only the operator sees (found probing the listing as an attacker would)."""
import http.client
import json

import pytest
from helpers import MiB, content, redirector

SECRET_NAME = "quarterly-report-unreleased.bin"


@pytest.fixture
def redirect_to():
    with redirector(keep_path=False) as server:
        yield server


@pytest.mark.time_limit(60)
def test_a_supernode_fetching_its_own_listing_gets_what_a_stranger_gets(
        origin, supernode_factory, client_factory, downloads, redirect_to):
    supernode = supernode_factory()
    src = origin.add(SECRET_NAME, content(MiB, seed=71))
    operator = client_factory([supernode.address], seed_for_s=30)
    operator.download(src.url + "?token=abc", str(downloads / "report.bin"))
    attacker = client_factory([supernode.address])
    api = "http://%s" % supernode.address
    redirect_to.target = api + "/v1/dashboard"
    fetched = {}
    for name, url in (("listing", api + "/v1/tasks"), ("task", api + "/v1/tasks/%s"
                                                        % operator.last_result.task_id),
                      ("dashboard via a redirect", "http://127.0.0.1:%d/x" % redirect_to.server_address[1])):
        result = attacker.download(url, str(downloads / "stolen"))
        assert result.via == "p2p"   # the supernode fetched it, from its own host
        fetched[name] = (downloads / "stolen").read_text()
    for name, text in fetched.items():
        assert SECRET_NAME not in text, (name, text[:500])
    assert json.loads(fetched["listing"])["tasks"][0]["url"] is None
    assert "127.0.0.1:%d" % operator.uploader_address[1] not in fetched["dashboard via a redirect"]


@pytest.mark.time_limit(60)
def test_a_supernode_fetching_a_daemons_dashboard_on_its_host_gets_no_proxy_targets(
        origin, supernode_factory, daemons, client_factory, downloads):
    supernode = supernode_factory()
    src = origin.add(SECRET_NAME, content(1000, seed=72))
    daemon = daemons.start(supernode=[supernode.address])
    host, port = daemon.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)   # a user's proxied request
    try:
        conn.request("GET", src.url)
        assert conn.getresponse().read() == src.data
    finally:
        conn.close()
    attacker = client_factory([supernode.address])
    result = attacker.download("http://%s/v1/dashboard" % daemon.address, str(downloads / "stolen"))
    assert result.via == "p2p"
    feed = json.loads((downloads / "stolen").read_text())
    assert feed["traffic"]["recent"] and SECRET_NAME not in json.dumps(feed)
