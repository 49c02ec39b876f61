"""Preheat with the real parts: Debian's docker-registry (token auth, as Harbor
runs it), an image pushed by skopeo, the supernode's preheat APIs called with
the exact bodies Harbor sends, then skopeo pulls through daemons: the registry
sends no blob byte after the preheat."""
import http.client
import json
import os
import threading

import pytest
from helpers import MiB, content, refused_address, reserve_ports, run_all, sha256_file, wait_until
from registry import MISSING, PASSWORD, USER, build_image, dir_layers, mirror_conf, pull, push

from dfly.errors import DflyError
from dfly.protocol.task import task_id
from dfly.supernode.client import SupernodeClient
from dfly.supernode.cluster import rendezvous_owner

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "ok")

CREDS = "%s:%s" % (USER, PASSWORD)
TOKEN = "preheat-token-for-tests"
REPO = "team/app"


@pytest.fixture
def registry(token_registry):
    return token_registry


@pytest.fixture
def image(tmp_path, registry):
    built = build_image(str(tmp_path / "layout"), "v1", layer_sizes=(1 << 20, 256 << 10))
    push(built, registry, REPO, creds=CREDS)
    return built


@pytest.fixture
def preheating(tmp_path, supernode_factory):
    """A supernode with preheat on (the token in a file), and its client."""
    path = tmp_path / "preheat.token"
    path.write_text(TOKEN + "\n")
    running = supernode_factory(preheat_token_file=str(path), source_timeout_s=5.0)
    client = SupernodeClient(running.address, timeout_s=10)
    yield running, client
    client.close()


def _manifest_url(registry, repo=REPO, ref="v1"):
    return "%s/v2/%s/manifests/%s" % (registry.url, repo, ref)


def _harbor_212_body(url: str, registry_token: str) -> dict:
    """What Harbor 2.12's dragonfly provider marshals: every field, Go zero values."""
    return {"type": "preheat",
            "args": {"type": "image", "url": url, "tag": "", "filtered_query_params": "",
                     "headers": {"Authorization": "Bearer " + registry_token},
                     "scope": "single_seed_peer", "concurrent_count": 0, "timeout": 0},
            "scheduler_cluster_ids": None}


def _harbor_211_body(url: str, registry_token: str, repo=REPO, tag="v1") -> dict:
    """What Harbor 2.11 posts to a Dragonfly 1.x /preheats (its PreheatImage)."""
    return {"type": "image", "url": url, "headers": {"Authorization": "Bearer " + registry_token},
            "image": repo, "tag": tag, "digest": ""}


def _call(address: str, method: str, path: str, body=None, token=TOKEN):
    """(status, JSON or text) of one raw call, as Harbor's HTTP client makes it."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    try:
        conn.request(method, path, json.dumps(body).encode() if body is not None else None, headers)
        reply = conn.getresponse()
        data = reply.read()
        return reply.status, (json.loads(data) if data.startswith(b"{") else data.decode())
    finally:
        conn.close()


def _finished_v2(client: SupernodeClient, job_id: int) -> dict:
    done = {}

    def over():
        done.update(client.preheat_job(job_id, TOKEN))
        return done["state"] != "PENDING"
    wait_until(over, timeout=60)
    return done


def _pull_token(token_server) -> str:
    return token_server.token("repository:%s:pull" % REPO, USER)


def _cached_tasks(supernode) -> list:
    return [t for t in supernode.service.task_list() if t["state"] == "done"]


@pytest.mark.time_limit(120)
def test_harbor_212_preheat_then_pulls_through_four_daemons_take_no_blob_byte_from_the_registry(
        tmp_path, registry, token_server, image, preheating, daemons):
    supernode, client = preheating
    assert _call(supernode.address, "GET", "/healthy", token="")[0] == 200
    job = client.preheat(_harbor_212_body(_manifest_url(registry), _pull_token(token_server)), TOKEN)
    assert isinstance(job["id"], int) and job["state"] == "PENDING"
    assert job["created_at"].endswith("Z")
    done = _finished_v2(client, job["id"])
    assert done["state"] == "SUCCESS", done
    results = done["result"]["job_states"][0]["results"][0]
    wanted = {d for arch in ("amd64", "arm64") for d in image.layers[arch]}
    assert wanted <= {t["url"].rsplit("/", 1)[1] for t in results["success_tasks"]}
    assert results["failure_tasks"] == []
    registry.settle()
    preheated = registry.blob_bytes()
    assert preheated >= image.size_of("amd64") + image.size_of("arm64")

    started = [daemons.start(supernode=[supernode.address], registry_mirror=registry.url)
               for _ in range(4)]
    confs = [mirror_conf(str(tmp_path / ("r%d.conf" % i)), registry, d.address)
             for i, d in enumerate(started)]
    arches = ["amd64", "arm64", "amd64", "arm64"]
    outcomes = run_all([lambda c=c, i=i: pull(c, registry, REPO, "v1", str(tmp_path / ("out%d" % i)),
                                              arch=arches[i], creds=CREDS)
                        for i, c in enumerate(confs)], timeout=90)
    assert [e for _, e in outcomes] == [None] * 4
    for i, arch in enumerate(arches):
        assert dir_layers(str(tmp_path / ("out%d" % i))) == image.layers[arch]
    registry.settle()
    assert registry.blob_bytes() == preheated, "a pull fetched blob bytes from the registry"


@pytest.mark.time_limit(90)
def test_harbor_211_preheat_of_one_platform_then_pull_takes_no_blob_byte(
        tmp_path, registry, token_server, image, preheating, daemons):
    supernode, _ = preheating
    assert _call(supernode.address, "GET", "/api/v1/_ping", token="")[0] == 200
    body = _harbor_211_body(_manifest_url(registry), _pull_token(token_server))
    status, created = _call(supernode.address, "POST", "/preheats", body)
    assert status == 200 and isinstance(created["ID"], str)
    reply = {}

    def over():
        reply.update(_call(supernode.address, "GET", "/preheats/" + created["ID"])[1])
        return reply["status"] in ("SUCCESS", "FAILED")
    wait_until(over, timeout=60)
    assert reply["status"] == "SUCCESS", reply
    assert reply["startTime"] and reply["finishTime"] and reply["errorMsg"] == ""
    # Harbor 2.11 asks again: already preheated, answered 208 with the same ID.
    assert _call(supernode.address, "POST", "/api/v1/preheats", body) == (208, {"ID": created["ID"]})

    registry.settle()
    preheated = registry.blob_bytes()
    running = daemons.start(supernode=[supernode.address], registry_mirror=registry.url)
    conf = mirror_conf(str(tmp_path / "r.conf"), registry, running.address)
    pull(conf, registry, REPO, "v1", str(tmp_path / "out"), creds=CREDS)
    assert dir_layers(str(tmp_path / "out")) == image.layers["amd64"]
    registry.settle()
    assert registry.blob_bytes() == preheated


@pytest.mark.time_limit(60)
def test_a_preheat_of_a_missing_image_fails_with_the_registrys_reason_and_caches_nothing(
        registry, token_server, image, preheating):
    supernode, client = preheating
    job = client.preheat(_harbor_212_body(_manifest_url(registry, ref="v9"),
                                          _pull_token(token_server)), TOKEN)
    done = _finished_v2(client, job["id"])
    assert done["state"] == "FAILURE"
    error = done["result"]["job_states"][0]["error"]
    assert "404" in error and "MANIFEST_UNKNOWN" in error
    registry.settle()
    assert supernode.service.task_list() == [] and registry.blob_gets() == []


@pytest.mark.time_limit(60)
def test_a_preheat_with_a_wrong_registry_token_fails_with_the_registrys_reason(
        registry, image, preheating):
    supernode, client = preheating
    job = client.preheat(_harbor_212_body(_manifest_url(registry), "not-a-token"), TOKEN)
    done = _finished_v2(client, job["id"])
    assert done["state"] == "FAILURE"
    error = done["result"]["job_states"][0]["error"]
    assert "401" in error and "UNAUTHORIZED" in error
    registry.settle()
    assert supernode.service.task_list() == [] and registry.blob_gets() == []


@pytest.mark.time_limit(60)
def test_a_preheat_from_an_unreachable_registry_fails_and_caches_nothing(preheating):
    supernode, client = preheating
    reply = {}
    with refused_address() as (host, port):
        url = "http://%s:%d/v2/%s/manifests/v1" % (host, port, REPO)
        status, created = _call(supernode.address, "POST", "/preheats", _harbor_211_body(url, "x"))
        assert status == 200

        def over():
            reply.update(_call(supernode.address, "GET", "/preheats/" + created["ID"])[1])
            return reply["status"] in ("SUCCESS", "FAILED")
        wait_until(over, timeout=30)
    assert reply["status"] == "FAILED" and "cannot reach the registry" in reply["errorMsg"]
    assert supernode.service.task_list() == []


def test_malformed_preheat_bodies_get_400_naming_the_field(preheating):
    supernode, _ = preheating
    status, reply = _call(supernode.address, "POST", "/oapi/v1/jobs",
                          {"type": "preheat", "args": {"type": "image"}})
    assert status == 400 and "'args.url'" in reply["error"]
    status, reply = _call(supernode.address, "POST", "/preheats",
                          {"type": "image", "url": "http://127.0.0.1:1/v2/app"})
    assert status == 400 and "'url'" in reply["error"]
    status, reply = _call(supernode.address, "GET", "/oapi/v1/jobs/abc")
    assert status == 400
    assert _call(supernode.address, "GET", "/oapi/v1/jobs/99")[0] == 404


def test_preheat_needs_the_token_and_is_off_without_one(preheating, supernode_factory, tmp_path):
    supernode, _ = preheating
    body = {"type": "file", "url": "http://127.0.0.1:1/f"}
    assert _call(supernode.address, "POST", "/preheats", body, token="")[0] == 401
    assert _call(supernode.address, "POST", "/preheats", body, token="wrong")[0] == 401
    off = supernode_factory(data_dir=tmp_path / "off")
    status, reply = _call(off.address, "POST", "/oapi/v1/jobs", body, token=TOKEN)
    assert status == 403 and "--preheat-token-file" in reply["error"]


def test_a_denied_source_fails_the_preheat_without_fetching(tmp_path, supernode_factory, origin):
    origin.add("f.bin", os.urandom(1000))
    path = tmp_path / "t"
    path.write_text(TOKEN)
    running = supernode_factory(preheat_token_file=str(path), deny_source=["127.0.0.0/8"])
    client = SupernodeClient(running.address, timeout_s=10)
    try:
        job = client.preheat({"type": "preheat", "args": {"type": "file", "url": origin.url("f.bin")}},
                             TOKEN)
        done = _finished_v2(client, job["id"])
    finally:
        client.close()
    assert done["state"] == "FAILURE" and "denied" in done["result"]["job_states"][0]["error"]
    assert origin.requests("f.bin") == 0


def test_a_file_preheat_with_scope_all_peers_caches_the_file_and_publishes_it(
        tmp_path, preheating, origin):
    supernode, client = preheating
    origin.add("f.bin", os.urandom(300_000))
    body = {"type": "preheat", "args": {"type": "file", "url": origin.url("f.bin"), "scope": "all_peers"}}
    done = _finished_v2(client, client.preheat(body, TOKEN)["id"])
    assert done["state"] == "SUCCESS"
    assert "published to subscribed daemons as publication 1" in done["result"]["job_states"][0]["note"]
    assert done["publication"] == 1
    assert [t["url"] for t in _cached_tasks(supernode)] == [origin.url("f.bin")]
    with pytest.raises(DflyError):
        client.preheat_job(done["id"], "wrong")


@pytest.mark.time_limit(60)
def test_a_preheat_joins_a_download_already_fetching_the_same_file(
        tmp_path, preheating, origin, client_factory, downloads):
    supernode, client = preheating
    hold = threading.Event()
    src = origin.add("shared.bin", content(2 * MiB, seed=91))
    origin.fault("shared.bin", hold=hold)
    peer = client_factory([supernode.address])
    outcome = run_all([lambda: peer.download(src.url, str(downloads / "peer.bin")),
                       lambda: _preheat_when_fetching(supernode, client, origin, hold, src)], timeout=40)
    assert [e for _, e in outcome] == [None, None]
    assert outcome[1][0]["state"] == "SUCCESS"
    assert origin.requests("shared.bin") == 1
    assert sha256_file(str(downloads / "peer.bin")) == src.sha256


def _preheat_when_fetching(supernode, client, origin, hold, src):
    wait_until(lambda: origin.arrived("shared.bin") == 1, timeout=20)
    job = client.preheat({"type": "preheat", "args": {"type": "file", "url": src.url}}, TOKEN)
    wait_until(lambda: client.preheat_job(job["id"], TOKEN)["progress"]["total"] == 1, timeout=20)
    hold.set()
    return _finished_v2(client, job["id"])


@pytest.mark.time_limit(60)
def test_in_a_cluster_each_file_is_preheated_at_the_member_owning_its_task(tmp_path, supernode_factory,
                                                                          origin):
    members = reserve_ports(2)
    path = tmp_path / "preheat.token"
    path.write_text(TOKEN)
    running = [supernode_factory(data_dir=tmp_path / ("m%d" % i), listen=address,
                                 cluster=[",".join(members)], cluster_secret="s3cret-s3cret-s3cret",
                                 preheat_token_file=str(path)) for i, address in enumerate(members)]
    other = next(n for n in ("f%d.bin" % i for i in range(100))
                 if rendezvous_owner(task_id(origin.url(n)), members) == members[1])
    src = origin.add(other, content(300_000, seed=92))
    client = SupernodeClient(members[0], timeout_s=10)
    try:
        done = _finished_v2(client, client.preheat(
            {"type": "preheat", "args": {"type": "file", "url": src.url}}, TOKEN)["id"])
    finally:
        client.close()
    assert done["state"] == "SUCCESS", done
    assert [t["url"] for t in _cached_tasks(running[1])] == [src.url]
    assert _cached_tasks(running[0]) == []
    assert origin.requests(other) == 1


@pytest.mark.time_limit(60)
def test_a_preheat_of_one_platform_fetches_only_that_platforms_blobs(
        registry, token_server, image, preheating):
    supernode, client = preheating
    body = _harbor_212_body(_manifest_url(registry), _pull_token(token_server))
    body["args"]["platform"] = "linux/arm64"
    done = _finished_v2(client, client.preheat(body, TOKEN)["id"])
    assert done["state"] == "SUCCESS", done
    registry.settle()
    fetched = {a.path.rsplit("/", 1)[1] for a in registry.blob_gets()}
    assert set(image.layers["arm64"]) <= fetched
    assert not fetched & set(image.layers["amd64"])


def test_dfly_preheat_reaches_a_supernode_speaking_mutual_tls(tmp_path, supernode_factory, origin,
                                                              capsys):
    from certs import Certs

    from dfly import cli
    certs = Certs(str(tmp_path / "certs"))
    path = tmp_path / "preheat.token"
    path.write_text(TOKEN)
    running = supernode_factory(preheat_token_file=str(path), **certs.mtls("supernode"))
    src = origin.add("tls.bin", content(200_000, seed=93))
    mine = certs.host("operator")
    code = cli.main(["preheat", src.url, "--supernode", running.address, "--token-file", str(path),
                     "--tls-ca", certs.ca, "--tls-cert", mine["tls_cert"], "--tls-key", mine["tls_key"],
                     "--json"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["state"] == "SUCCESS"
    assert [t["url"] for t in _cached_tasks(running)] == [src.url]
