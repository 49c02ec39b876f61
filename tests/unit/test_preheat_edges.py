"""Preheat jobs shown in Dragonfly's v2 form and preheat targets at their edges
(survivors of a mutation run of protocol/preheat.py, docs/TESTING.md): the v2
body is read by Dragonfly's own clients, so its every key and value is pinned."""
import json

import pytest

from dfly.errors import BadRequest
from dfly.protocol.preheat import (
    INDEX_TYPES,
    MAX_MANIFEST_BYTES,
    SCOPE_ALL_PEERS,
    BadManifest,
    Job,
    PreheatRequest,
    parse_v2,
    target_url,
    walk,
)

MANIFEST = "https://reg.example/v2/team/app/manifests/v1"
DIGEST = "sha256:" + "c" * 64


def test_a_finished_job_in_v2_form_is_exactly_dragonflys_shape():
    job = Job(7, PreheatRequest("image", MANIFEST, {}, ("linux/amd64", "linux/arm64"), "all_seed_peers"),
              "c", created_at=0.0)
    job.started(60.0)
    job.task_added("a", "https://reg.example/v2/team/app/blobs/a")
    job.task_added("b", "https://reg.example/v2/team/app/blobs/b")
    job.task_done("a")
    job.task_failed("b", "404")
    job.finished(120.0)
    assert job.v2("sn1", "127.0.0.1") == {
        "id": 7, "type": "preheat", "state": "FAILURE",
        "created_at": "1970-01-01T00:00:00Z", "updated_at": "1970-01-01T00:02:00Z",
        "args": {"type": "image", "url": MANIFEST, "scope": "all_seed_peers",
                 "platform": "linux/amd64,linux/arm64"},
        "result": {"job_states": [{"state": "FAILURE", "error": "404", "note": "", "results": [{
            "success_tasks": [{"url": "https://reg.example/v2/team/app/blobs/a", "hostname": "sn1",
                               "ip": "127.0.0.1"}],
            "failure_tasks": [{"url": "https://reg.example/v2/team/app/blobs/b", "hostname": "sn1",
                               "ip": "127.0.0.1", "description": "404"}],
            "scheduler_cluster_id": 1}]}]}}


def test_a_running_job_is_updated_when_it_started():
    job = Job(1, PreheatRequest("file", "http://o/f", {}), "c", created_at=0.0)
    job.started(60.0)
    assert job.v2("h", "::1")["updated_at"] == "1970-01-01T00:01:00Z"


@pytest.mark.parametrize("text, url", [
    ("reg.example/app", "https://reg.example/v2/app/manifests/latest"),
    ("reg.example:5000/app", "https://reg.example:5000/v2/app/manifests/latest"),
    ("localhost/team/app:v2", "https://localhost/v2/team/app/manifests/v2"),
])
def test_an_image_reference_is_its_https_manifest_url(text, url):
    assert target_url(text) == ("image", url)


def test_a_url_is_known_by_its_scheme_in_any_case():
    assert target_url("HTTP://o/f.bin") == ("file", "http://o/f.bin")


def test_the_same_preheat_is_one_job_whatever_its_platform_order_or_credentials():
    one = PreheatRequest("image", MANIFEST, {"Authorization": "a"}, ("linux/arm64", "linux/amd64"))
    same = PreheatRequest("image", MANIFEST, {}, ("linux/amd64", "linux/arm64"))
    assert one.key() == same.key()
    assert one.key() != one._replace(filters=("t",)).key()
    assert one.key() != one._replace(scope=SCOPE_ALL_PEERS).key()
    assert PreheatRequest("file", "http://o/f?a=1&b=2", {}, filters=("b", "a")).key() \
        == PreheatRequest("file", "http://o/f?a=1&b=2", {}, filters=("a", "b")).key()


def job_body(**args) -> dict:
    return {"type": "preheat", "args": dict({"type": "file", "url": "http://o/f"}, **args)}


@pytest.mark.parametrize("headers, ok", [
    ({"n" * 256: "v"}, True), ({"n" * 257: "v"}, False),
    ({"n": "v" * 8192}, True), ({"n": "v" * 8193}, False),
    ({"h%d" % i: "v" for i in range(64)}, True), ({"h%d" % i: "v" for i in range(65)}, False),
])
def test_preheat_headers_are_kept_up_to_their_limits(headers, ok):
    if ok:
        assert parse_v2(job_body(headers=headers)).headers == headers
    else:
        with pytest.raises(BadRequest, match="'args.headers'"):
            parse_v2(job_body(headers=headers))


def test_a_hop_by_hop_header_is_dropped_in_any_case():
    assert parse_v2(job_body(headers={"Connection": "close", "X-A": "1"})).headers == {"X-A": "1"}


def index_body(**fields) -> bytes:
    doc = {"manifests": [{"digest": DIGEST, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}}]}
    doc.update(fields)
    return json.dumps(doc).encode()


def test_a_manifest_is_known_by_its_own_media_type_before_the_content_type():
    assert walk(index_body(mediaType=INDEX_TYPES[0]), "application/octet-stream").manifests == [DIGEST]
    assert walk(index_body(), "").manifests == [DIGEST]


def test_a_manifest_of_another_type_is_refused_whatever_it_lists():
    with pytest.raises(BadManifest, match="unsupported manifest type 'application/x'"):
        walk(index_body(mediaType="application/x", layers=[]), "")


def test_a_manifest_of_exactly_the_size_limit_is_read_and_a_longer_one_refused():
    body = index_body(mediaType=INDEX_TYPES[0]).ljust(MAX_MANIFEST_BYTES)
    assert walk(body, "").manifests == [DIGEST]
    with pytest.raises(BadManifest, match="^manifest over %d bytes$" % MAX_MANIFEST_BYTES):
        walk(body + b" ", "")
