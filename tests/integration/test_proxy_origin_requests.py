"""The daemon's proxy asks the origin once per task, not once per client: many
concurrent clients for one cold file cost the origin one HEAD (its content
headers, shared) and one GET (through the supernode); a client with
credentials still gets the origin's say of its own."""
import http.client
import os

import pytest
from helpers import MiB, content, run_all

from dfly.protocol.address import parse_address

RULES = ["p2p /big/"]
CLIENTS = 50


def _get(proxy_address: str, url: str, headers=None):
    host, port = parse_address(proxy_address, 0)
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("GET", url, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict((k.lower(), v) for k, v in response.getheaders()), response.read()
    finally:
        conn.close()


def _requests(origin, name: str, method: str):
    return [s for s in origin.served(name) if s.method == method]


def _cold_file(origin, name: str, seed: int):
    os.makedirs(os.path.join(origin.root, "big"), exist_ok=True)
    return origin.add(name, content(4 * MiB, seed=seed), content_headers={"Content-Type": "text/csv"})


@pytest.mark.time_limit(90)
def test_concurrent_clients_for_one_cold_file_cost_the_origin_one_head_and_one_get(
        origin, supernode, daemons):
    big = _cold_file(origin, "big/cold.bin", seed=41)
    running = daemons.start(supernode=[supernode.address], proxy_rule=RULES)
    outcomes = run_all([lambda: _get(running.address, big.url)] * CLIENTS, timeout=80)
    assert len(_requests(origin, "big/cold.bin", "HEAD")) <= 1
    assert len(_requests(origin, "big/cold.bin", "GET")) == 1
    for result, error in outcomes:
        assert error is None
        status, headers, body = result
        assert status == 200 and body == big.data
        assert headers["content-type"] == "text/csv" and headers["x-dfly"] == "p2p"


@pytest.mark.time_limit(90)
def test_clients_with_credentials_each_get_their_own_head(origin, supernode, daemons):
    big = _cold_file(origin, "big/private.bin", seed=42)
    running = daemons.start(supernode=[supernode.address], proxy_rule=RULES)
    tokens = ["Bearer client-%d" % i for i in range(4)]
    calls = [lambda t=t: _get(running.address, big.url, {"Authorization": t}) for t in tokens]
    calls.append(lambda: _get(running.address, big.url, {"Cookie": "session=s1"}))
    calls += [lambda: _get(running.address, big.url)] * 10
    for result, error in run_all(calls, timeout=80):
        assert error is None and result[0] == 200 and result[2] == big.data
    heads = _requests(origin, "big/private.bin", "HEAD")
    asked_with = sorted(h.headers.get("Authorization", "") for h in heads if "Cookie" not in h.headers)
    assert asked_with[-len(tokens):] == tokens
    assert [h.headers.get("Cookie") for h in heads if "Cookie" in h.headers] == ["session=s1"]
    assert len(heads) <= len(tokens) + 1 + 1   # and at most one for the ten without credentials


@pytest.mark.time_limit(60)
def test_an_answer_given_to_a_client_with_an_api_key_header_is_not_shared_with_one_without(
        origin, supernode, daemons):
    # Many origins (GitLab's PRIVATE-TOKEN, Artifactory's X-JFrog-Art-Api) take a key in a
    # header of their own, not in Authorization or Cookie.
    big = _cold_file(origin, "big/keyed.bin", seed=43)
    origin.fault("big/keyed.bin", require=("X-Api-Key", "k1"))
    running = daemons.start(supernode=[supernode.address], proxy_rule=RULES)
    assert _get(running.address, big.url, {"X-Api-Key": "k1"})[2] == big.data   # HEAD and GET, keyed
    status, _, body = _get(running.address, big.url)
    assert status == 403 and body != big.data
    assert _get(running.address, big.url, {"X-Api-Key": "wrong"})[0] == 403
    assert _get(running.address, big.url, {"X-Api-Key": "k1"})[2] == big.data   # its answer is kept


@pytest.mark.time_limit(60)
def test_an_expired_description_is_revalidated_with_its_validators(origin, supernode, daemons):
    big = _cold_file(origin, "big/revalidated.bin", seed=43)
    running = daemons.start(supernode=[supernode.address], proxy_rule=RULES, proxy_fresh_for_s=0.0)
    for _ in range(2):
        status, headers, body = _get(running.address, big.url)
        assert status == 200 and body == big.data and headers["content-type"] == "text/csv"
    heads = _requests(origin, "big/revalidated.bin", "HEAD")
    assert [h.status for h in heads] == [200, 304]
    assert heads[1].headers.get("If-None-Match") == big.etag
