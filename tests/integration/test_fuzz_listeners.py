"""Every live listener, fuzzed at the socket (tests/fuzz.py): a few hundred
mutated and truncated requests each, for a bounded time, inside a network
namespace of the test's own (mutants can name any host). Afterwards the
listener answers a normal request correctly, no reply leaked a traceback or a
file outside the data dir, and its threads and open files are back to what
they were before (waited for, not slept on)."""
import hashlib
import json
import os
import secrets
import threading
import time
from urllib.parse import urlsplit

import pytest
from fuzz import (
    Fuzzer,
    exchange,
    free_port,
    open_fds,
    private_network,
    request,
    status_of,
    thread_count,
    traversals,
    why_no_private_network,
)
from helpers import MiB, content, peer_secret_of, piece_access, wait_until

from dfly.protocol import signing
from dfly.protocol.messages import RegisterRequest, ScheduleRequest
from dfly.supernode.client import CLUSTER_HEADER, SupernodeClient

pytestmark = pytest.mark.skipif(bool(why_no_private_network()), reason=why_no_private_network())

MAX_REQUESTS = int(os.environ.get("DFLY_FUZZ_REQUESTS", "3000"))
MAX_SECONDS = float(os.environ.get("DFLY_FUZZ_SECONDS", "8"))
RNG_OFFSET = int(os.environ.get("DFLY_FUZZ_SEED", "0"))   # another run, another sequence
SETTLE_S = 20.0   # for the handler threads of the last mutants to see their clients gone


@pytest.fixture(autouse=True)
def private_net():
    """First of all: every listener, origin and process below lives in it."""
    with private_network():
        yield


@pytest.fixture
def canary(tmp_path):
    """A file outside every data dir: no reply may ever hold its bytes."""
    secret = b"DFLY-CANARY-" + secrets.token_hex(16).encode()
    path = tmp_path / "outside" / "canary.txt"
    path.parent.mkdir()
    path.write_bytes(secret)
    return str(path), secret


def _address(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def _fuzz(address, seeds, canary, rng_seed, pid=None):
    """Fuzz `address`; assert no finding and that threads and fds come back. The report."""
    threads, fds = thread_count(pid), open_fds(pid)
    before = {t.name for t in threading.enumerate()}
    report = Fuzzer(seeds, canary[1], rng_seed + RNG_OFFSET, MAX_REQUESTS, MAX_SECONDS).fuzz(address)
    assert report.sent >= 50, report   # a fuzz that hardly ran proves nothing
    assert report.findings == [], "\n".join(report.findings[:10])
    try:
        wait_until(lambda: thread_count(pid) <= threads, timeout=SETTLE_S)
    except AssertionError:
        extra = sorted(t.name for t in threading.enumerate() if t.name not in before)
        raise AssertionError("threads not back to %d: %s" % (threads, extra))
    wait_until(lambda: open_fds(pid) <= fds, timeout=SETTLE_S,
               message="open files back to %d (now %d)" % (fds, open_fds(pid)))
    return report


def _piece(address, tid, num, key):
    query, token = piece_access(key, tid)
    reply = exchange(address, request("GET", "/v1/tasks/%s/pieces/%d%s" % (tid, num, query),
                                      [("Connection", "close")] + list(token.items())), 5.0)
    head, _, body = reply.partition(b"\r\n\r\n")
    return status_of(reply), body


@pytest.mark.time_limit(60)
def test_a_fuzzed_cluster_supernode_stays_up_leaks_nothing_and_serves_pieces(
        origin, supernode_factory, canary, tmp_path):
    me, dead = "127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()
    supernode = supernode_factory(listen=me, cluster=[me, dead], cluster_secret="s3cret",
                                  member_dead_after_s=0.5)
    address = _address(supernode.address)
    src = origin.add("target.bin", content(2 * MiB + 5, seed=11))
    client = SupernodeClient(supernode.address, timeout_s=5)
    wait_until(lambda: sum(m["alive"] for m in client.cluster()["members"]) == 1, timeout=10)
    tid, _ = client.register(RegisterRequest(url=src.url, peer_id="fuzz", peer_port=9,
                                             peer_host="127.0.0.1"))
    wait_until(lambda: client.task(tid)["state"] == "done", timeout=15)
    client.close()

    register = json.dumps({"url": src.url, "peer": {"id": "fz", "port": 9, "host": "127.0.0.1"},
                           "filters": ["sig"], "headers": {"X-A": "b"}}).encode()
    schedule = json.dumps(ScheduleRequest("fz", done=[0], want=2).to_json()).encode()
    failed = json.dumps({"peer_id": "fz", "failed": [{"num": 1, "holder": "fuzz"}], "want": 1}).encode()
    ping = json.dumps({"member": dead, "active": [tid]}).encode()
    wrong = [(CLUSTER_HEADER, "not-the-token"), ("Content-Type", "application/json")]
    tokened = piece_access(supernode.service.piece_key, tid)
    seeds = [
        request("GET", "/healthz"), request("GET", "/v1/tasks"), request("GET", "/v1/tasks/" + tid),
        request("POST", "/v1/tasks", [("Content-Type", "application/json")], register),
        request("POST", "/v1/tasks/%s/schedule" % tid, [], schedule),
        request("POST", "/v1/tasks/%s/schedule" % tid, [], failed),
        request("POST", "/v1/tasks/%s/peers/fz/heartbeat" % tid, [], b"{}"),
        request("DELETE", "/v1/tasks/%s/peers/fz" % tid),
        request("GET", "/v1/tasks/%s/pieces/1?peer=fz" % tid, [("Range", "bytes=0-99")]),
        request("HEAD", "/v1/tasks/%s/pieces/2" % tid),
        # with a good token, so mutants reach past its check
        request("GET", "/v1/tasks/%s/pieces/1%s" % (tid, tokened[0]), list(tokened[1].items())),
        request("GET", "/v1/cluster"),
        request("POST", "/v1/cluster/ping", wrong, ping),
        request("GET", "/v1/cluster/tasks/" + tid, wrong),
        request("PUT", "/v1/cluster/tasks/" + tid, wrong, json.dumps({"digests": ["a" * 64]}).encode()),
    ] + traversals(canary[0], str(tmp_path / "supernode"),
                   ["/v1/tasks/{}/pieces/0", "/v1/tasks/%s/pieces/{}" % tid, "/{}",
                    "/v1/cluster/tasks/{}"])

    _fuzz(address, seeds, canary, rng_seed=1)

    status, body = _piece(address, tid, 2, supernode.service.piece_key)
    assert status == 200 and body == src.data[2 * MiB:]


def _signed_as(key: bytes, member: str):
    """A Fuzzer `finish`: the mutant signed afresh as `member` over the method, path and
    body the supernode will read from it, so it gets past the signature check."""
    def finish(payload: bytes) -> bytes:
        head, _, body = payload.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        first = lines[0].split(b" ")
        if len(first) != 3:
            return payload
        method, target = first[0].decode("latin-1"), first[1].decode("latin-1")
        kept = [line for line in lines[1:] if not line.lower().startswith(
            (b"content-length:", CLUSTER_HEADER.lower().encode() + b":"))]
        length = len(body) if body or method in ("POST", "PUT") else None
        header = signing.sign(key, member, method, urlsplit(target).path, body, time.time(),
                              secrets.token_hex(16))
        kept.append(("%s: %s" % (CLUSTER_HEADER, header)).encode("latin-1"))
        if length is not None:
            kept.append(b"Content-Length: %d" % length)
        return b"\r\n".join([lines[0]] + kept) + b"\r\n\r\n" + body
    return finish


@pytest.mark.time_limit(60)
def test_cluster_endpoints_fuzzed_with_valid_signatures_stay_up_and_leak_nothing(
        origin, supernode_factory, canary, tmp_path):
    me, other = "127.0.0.1:%d" % free_port(), "127.0.0.1:%d" % free_port()
    supernode = supernode_factory(listen=me, cluster=[me, other], cluster_secret="s3cret-of-the-fuzz",
                                  member_dead_after_s=0.5)
    address = _address(supernode.address)
    src = origin.add("member.bin", content(MiB + 3, seed=15))
    client = SupernodeClient(supernode.address, timeout_s=5)
    wait_until(lambda: sum(m["alive"] for m in client.cluster()["members"]) == 1, timeout=10)
    tid, _ = client.register(RegisterRequest(url=src.url, peer_id="fuzz", peer_port=9,
                                             peer_host="127.0.0.1"))
    wait_until(lambda: client.task(tid)["state"] == "done", timeout=15)
    client.close()
    json_type = [("Content-Type", "application/json")]
    digests = json.dumps({"url": src.url, "length": MiB + 3, "piece_size": MiB,
                          "digests": ["a" * 64, "b" * 64], "content_version": "v"}).encode()
    pings = [json.dumps({"member": other, "active": active}).encode() for active in ([tid], [])]
    seeds = [
        request("POST", "/v1/cluster/ping", json_type, pings[0]),
        request("POST", "/v1/cluster/ping", json_type, pings[1]),
        request("GET", "/v1/cluster/tasks/" + tid),
        request("GET", "/v1/cluster/tasks/" + "0" * 64),
        request("PUT", "/v1/cluster/tasks/" + tid, json_type, digests),
        request("PUT", "/v1/cluster/tasks/" + "1" * 64, json_type, digests),
        request("GET", "/v1/cluster"),
    ] + traversals(canary[0], str(tmp_path / "supernode"), ["/v1/cluster/tasks/{}"])
    key = signing.cluster_key("s3cret-of-the-fuzz", [me, other])
    threads, fds = thread_count(), open_fds()
    report = Fuzzer(seeds, canary[1], 5 + RNG_OFFSET, MAX_REQUESTS, MAX_SECONDS,
                    finish=_signed_as(key, other)).fuzz(address)
    assert report.sent >= 50, report
    assert report.findings == [], "\n".join(report.findings[:10])
    # most mutants got past the signature: answered, not refused as strangers
    assert sum(n for status, n in report.statuses.items() if status in (200, 400, 404)) \
        > report.sent // 4, report.statuses
    wait_until(lambda: thread_count() <= threads, timeout=SETTLE_S, message="threads back")
    wait_until(lambda: open_fds() <= fds, timeout=SETTLE_S, message="open files back")
    check = SupernodeClient(supernode.address, timeout_s=5)
    try:
        assert check.task(tid)["state"] == "done"
    finally:
        check.close()


@pytest.mark.time_limit(60)
def test_a_fuzzed_uploader_stays_up_leaks_nothing_and_serves_pieces(
        origin, supernode, client_factory, downloads, canary, tmp_path):
    src = origin.add("seeded.bin", content(2 * MiB + 7, seed=12))
    seeder = client_factory([supernode.address], seed_for_s=60)
    result = seeder.download(src.url, str(downloads / "seeded.bin"))
    address = seeder.uploader_address
    tid = result.task_id
    query, token = piece_access(peer_secret_of(seeder), tid)
    seeds = [
        request("GET", "/healthz"),
        request("GET", "/v1/tasks/%s/pieces/0" % tid),
        request("GET", "/v1/tasks/%s/pieces/0%s" % (tid, query), list(token.items())),
        request("GET", "/v1/tasks/%s/pieces/2%s" % (tid, query), [("Range", "bytes=1-5")]
                + list(token.items())),
        request("GET", "/v1/tasks/%s/pieces/2?peer=x" % tid, [("Range", "bytes=1-5")]),
        request("HEAD", "/v1/tasks/%s/pieces/1" % tid),
        request("GET", "/v1/tasks/%s/pieces/1" % tid, [("Connection", "keep-alive")])
        + request("GET", "/v1/tasks/%s/pieces/2" % tid),
    ] + traversals(canary[0], seeder.data_dir, ["/v1/tasks/{}/pieces/0", "/v1/tasks/%s/pieces/{}" % tid,
                                                "/{}"])

    _fuzz(address, seeds, canary, rng_seed=2)

    status, body = _piece(address, tid, 1, peer_secret_of(seeder))
    assert status == 200 and body == src.data[MiB:2 * MiB]


@pytest.mark.time_limit(60)
def test_a_fuzzed_daemon_front_stays_up_leaks_nothing_and_serves_the_mirror(
        origin, supernode, daemons, canary, tmp_path):
    blob = content(MiB + 3, seed=13)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    os.makedirs(os.path.join(origin.root, "v2", "team", "app", "blobs"))
    origin.add("v2/team/app/blobs/" + digest, blob)
    origin.add("plain.txt", b"plain\n")
    daemon = daemons.start(supernode=[supernode.address], registry_mirror="http://127.0.0.1:%d"
                           % origin.address[1])
    address = _address(daemon.address)
    blob_path = "/v2/team/app/blobs/" + digest
    assert _get_body(address, blob_path) == blob   # warm: the blob is cached and seeded

    upstream = "127.0.0.1:%d" % origin.address[1]
    handoff = json.dumps({"url": "http://%s/missing" % upstream, "output": str(tmp_path / "handoff.out")})
    seeds = [
        request("GET", "/healthz"), request("GET", "/v1/stats"),
        request("POST", "/v1/downloads", [("Content-Type", "application/json")], handoff.encode()),
        request("GET", "/v2/"), request("GET", blob_path), request("HEAD", blob_path),
        request("GET", blob_path, [("Range", "bytes=10-20")]),
        request("GET", "/v2/team/app/manifests/latest", [("Accept", "application/json")]),
        request("GET", "/v2/team/app/tags/list"),
        request("GET", "http://%s/plain.txt" % upstream, [("Proxy-Connection", "keep-alive")]),
        request("GET", "http://%s%s" % (upstream, blob_path)),
        request("POST", "http://%s/plain.txt" % upstream, [], b"a=b"),
        request("CONNECT", upstream) + b"GET /plain.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        request("OPTIONS", "*"),
    ] + traversals(canary[0], daemon.data_dir, ["/v2/team/app/blobs/{}", "/v2/{}/blobs/" + digest,
                                                "/{}", "/v1/downloads/{}"])

    _fuzz(address, seeds, canary, rng_seed=3)

    assert _get_body(address, blob_path) == blob
    assert not os.path.exists(str(tmp_path / "handoff.out"))


def _get_body(address, path):
    reply = exchange(address, request("GET", path, [("Connection", "close")]), 15.0)
    assert status_of(reply) == 200, reply[:300]
    return reply.partition(b"\r\n\r\n")[2]


@pytest.mark.time_limit(120)
def test_a_fuzzed_supernodes_preheat_publish_and_operations_endpoints_stay_up_and_leak_nothing(
        origin, supernode_factory, canary, tmp_path):
    """The endpoints behind a bearer token (Harbor's preheats, publish, the operations
    views), fuzzed with the right token so mutants reach past it, and polls."""
    tokens = {}
    for name in ("preheat", "ops"):
        tokens[name] = secrets.token_hex(16)
        (tmp_path / name).write_text(tokens[name] + "\n")
    supernode = supernode_factory(preheat_token_file=str(tmp_path / "preheat"),
                                  ops_token_file=str(tmp_path / "ops"), source_timeout_s=2.0)
    address = _address(supernode.address)
    src = origin.add("published.bin", content(MiB + 11, seed=16))
    json_type = ("Content-Type", "application/json")
    harbor = [("Authorization", "Bearer " + tokens["preheat"]), json_type]
    ops = [("Authorization", "Bearer " + tokens["ops"])]
    v1 = json.dumps({"type": "file", "url": src.url, "headers": {"X-A": "b"}}).encode()
    v2 = json.dumps({"type": "preheat", "args": {"type": "file", "url": src.url, "scope": "single_peer",
                                                 "filtered_query_params": "sig"}}).encode()
    manifest = "http://127.0.0.1:%d/v2/team/app/manifests/latest" % origin.address[1]
    image = json.dumps({"type": "image", "url": manifest, "platform": "linux/amd64"}).encode()
    publish = json.dumps({"url": src.url, "type": "file"}).encode()
    seeds = [
        request("GET", "/_ping"), request("GET", "/api/v1/_ping"), request("GET", "/healthy"),
        request("POST", "/preheats", harbor, v1), request("POST", "/api/v1/preheats", harbor, image),
        request("GET", "/preheats/1", harbor), request("POST", "/oapi/v1/jobs", harbor, v2),
        request("GET", "/oapi/v1/jobs/2", harbor), request("POST", "/preheats", [json_type], v1),
        request("POST", "/v1/publications", harbor, publish),
        request("GET", "/v1/publications?subscriber=d-1&topics=*,%s&after=0&wait=0" % src.url),
        request("GET", "/v1/publications?subscriber=d-2&topics=127.0.0.1*&after=1"),
        request("GET", "/v1/subscriptions", ops), request("GET", "/metrics", ops),
        request("GET", "/metrics"), request("GET", "/dashboard", ops), request("GET", "/v1/dashboard", ops),
    ] + traversals(canary[0], str(tmp_path / "supernode"), ["/preheats/{}", "/oapi/v1/jobs/{}", "/{}"])
    for seed in seeds:   # once as sent: workers and pools started before threads are counted
        assert status_of(exchange(address, seed, 5.0)) is not None, seed
    threads, fds = thread_count(), open_fds()
    report = Fuzzer(seeds, canary[1], 6 + RNG_OFFSET, MAX_REQUESTS, MAX_SECONDS).fuzz(address)
    assert report.sent >= 50, report
    assert report.findings == [], "\n".join(report.findings[:10])
    assert report.statuses.get(200, 0) + report.statuses.get(208, 0) > report.sent // 20, report.statuses
    # a poll waits at most 30 s (a mutant may ask for that): its thread ends then
    wait_until(lambda: thread_count() <= threads, timeout=SETTLE_S + 30, message="threads back")
    wait_until(lambda: open_fds() <= fds, timeout=SETTLE_S, message="open files back")
    reply = exchange(address, request("GET", "/metrics", ops + [("Connection", "close")]), 5.0)
    assert status_of(reply) == 200 and b"Traceback" not in reply
