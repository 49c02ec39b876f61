"""Preheat's pure rules: Harbor's two bodies, the job table, the manifest walk."""
import json

import pytest

from dfly.errors import BadRequest
from dfly.protocol import preheat
from dfly.protocol.preheat import Jobs, Limits, PreheatRequest

URL = "http://127.0.0.1:5000/v2/library/app/manifests/v1"
D1, D2, D3 = ("sha256:" + c * 64 for c in "123")

# What Harbor 2.12's provider marshals (every field, no omitempty; Go's null for no ids).
HARBOR_212 = {"type": "preheat", "args": {"type": "image", "url": URL, "tag": "",
                                          "filtered_query_params": "",
                                          "headers": {"Authorization": "Bearer regtoken"},
                                          "scope": "single_seed_peer", "concurrent_count": 0,
                                          "timeout": 0},
              "scheduler_cluster_ids": None}
# What Harbor 2.11's provider posts (PreheatImage: "digest" has no omitempty).
HARBOR_211 = {"type": "image", "url": URL, "headers": {"Authorization": "Bearer regtoken"},
              "image": "library/app", "tag": "v1", "digest": ""}


def test_harbor_212_body_parses_to_an_image_request():
    req = preheat.parse_v2(HARBOR_212)
    assert req == PreheatRequest("image", URL, {"Authorization": "Bearer regtoken"}, (),
                                 "single_seed_peer", ())


def test_harbor_211_body_parses_to_the_same_request_without_scope():
    assert preheat.parse_v1(HARBOR_211) == PreheatRequest("image", URL,
                                                          {"Authorization": "Bearer regtoken"})


def test_platforms_and_filters_of_dragonfly_2_args_are_read():
    body = json.loads(json.dumps(HARBOR_212))
    body["args"].update(platform="linux/arm64", filtered_query_params="Expires&Signature")
    req = preheat.parse_v2(body)
    assert req.platforms == ("linux/arm64",) and req.filters == ("Expires", "Signature")


@pytest.mark.parametrize("change, field", [
    ({"args": None}, "'args'"),
    ({"type": "export"}, "'type'"),
    ({"args": {"type": "image"}}, "'args.url'"),
    ({"args": {"type": "video", "url": URL}}, "'args.type'"),
    ({"args": {"type": "image", "url": "ftp://x/v2/a/manifests/b"}}, "'args.url'"),
    ({"args": {"type": "image", "url": "http://r/v2/a/blobs/" + D1}}, "'args.url'"),
    ({"args": {"type": "image", "url": "http://r/v2/Bad/manifests/v1"}}, "'args.url'"),
    ({"args": {"type": "image", "url": URL, "headers": ["Authorization"]}}, "'args.headers'"),
    ({"args": {"type": "image", "url": URL, "headers": {"A": "b\r\nX: y"}}}, "'args.headers'"),
    ({"args": {"type": "image", "url": URL, "scope": "everyone"}}, "'args.scope'"),
    ({"args": {"type": "image", "url": URL, "platform": "linux"}}, "'args.platform'"),
    ({"args": {"type": "image", "url": URL, "timeout": "30m"}}, "'args.timeout'"),
    ({"scheduler_cluster_ids": ["a"]}, "'scheduler_cluster_ids'"),
])
def test_a_malformed_v2_body_is_refused_naming_the_field(change, field):
    body = dict(HARBOR_212, **change)
    with pytest.raises(BadRequest) as caught:
        preheat.parse_v2(body)
    assert field in str(caught.value)


@pytest.mark.parametrize("change, field", [
    ({"type": None}, "'type'"), ({"url": None}, "'url'"), ({"url": 5}, "'url'"),
    ({"image": 7}, "'image'"), ({"headers": "Bearer x"}, "'headers'"),
    ({"url": "http://r/v2/app"}, "'url'"),
])
def test_a_malformed_v1_body_is_refused_naming_the_field(change, field):
    with pytest.raises(BadRequest) as caught:
        preheat.parse_v1(dict(HARBOR_211, **change))
    assert field in str(caught.value)


def test_a_file_preheat_takes_any_http_url():
    req = preheat.parse_v1({"type": "file", "url": "https://origin.test/big.iso?sig=1"})
    assert req.kind == "file" and req.url.endswith("sig=1")


def test_the_image_reference_keeps_a_registry_path_prefix():
    ref = preheat.image_ref("https://h.test:5000/mirror/v2/team/app/manifests/" + D1)
    assert ref == preheat.ImageRef("https://h.test:5000/mirror", "team/app", D1)
    assert ref.blob_url(D2) == "https://h.test:5000/mirror/v2/team/app/blobs/" + D2


def _index(*platforms):
    return json.dumps({"mediaType": preheat.INDEX_TYPES[0], "manifests": [
        {"digest": d, "size": 1, "platform": {"os": "linux", "architecture": a}}
        for d, a in platforms]}).encode()


def _manifest(config, *layers):
    return json.dumps({"mediaType": preheat.MANIFEST_TYPES[0],
                       "config": {"digest": config, "size": 10},
                       "layers": [{"digest": d, "size": 100} for d in layers]}).encode()


def test_an_index_walks_to_every_platform_or_to_those_asked_for():
    body = _index((D1, "amd64"), (D2, "arm64"))
    assert preheat.walk(body, "").manifests == [D1, D2]
    assert preheat.walk(body, "", ("linux/arm64",)).manifests == [D2]
    with pytest.raises(preheat.BadManifest, match="no manifest for platform linux/s390x"):
        preheat.walk(body, "", ("linux/s390x",))


def test_a_manifest_walks_to_its_config_and_layers_once_each():
    walked = preheat.walk(_manifest(D1, D2, D3, D2), "")
    assert [b.digest for b in walked.blobs] == [D1, D2, D3] and walked.manifests == []


@pytest.mark.parametrize("body", [b"<html>", b"[]", json.dumps({"schemaVersion": 1}).encode(),
                                  json.dumps({"layers": [{"digest": "sha256:x"}], "config": {}}).encode()])
def test_what_is_not_a_manifest_is_refused(body):
    with pytest.raises(preheat.BadManifest):
        preheat.walk(body, "application/json")


def _request(url=URL):
    return PreheatRequest("image", url, {})


def test_the_same_preheat_while_it_runs_is_the_same_job():
    jobs = Jobs()
    first, new = jobs.submit(_request(), "h1", 100.0)
    again, new_again = jobs.submit(_request(), "h2", 101.0)
    assert new and not new_again and again is first


def test_a_preheat_that_just_succeeded_is_answered_done_then_run_again_later():
    jobs = Jobs(Limits(fresh_s=60))
    job, _ = jobs.submit(_request(), "h1", 100.0)
    job.started(100.0)
    job.finished(110.0)
    assert jobs.submit(_request(), "h1", 150.0) == (job, False)
    later, new = jobs.submit(_request(), "h1", 171.0)
    assert new and later.id != job.id


def test_jobs_are_bounded_per_client_and_in_all():
    jobs = Jobs(Limits(max_per_client=2, max_waiting=3))
    jobs.submit(_request(URL + "a"), "h1", 0.0)
    jobs.submit(_request(URL + "b"), "h1", 0.0)
    with pytest.raises(preheat.TooMany, match="h1"):
        jobs.submit(_request(URL + "c"), "h1", 0.0)
    jobs.submit(_request(URL + "c"), "h2", 0.0)
    with pytest.raises(preheat.TooMany):
        jobs.submit(_request(URL + "d"), "h3", 0.0)


def test_finished_jobs_are_forgotten_by_age_and_by_count():
    jobs = Jobs(Limits(max_records=2, keep_s=100))
    made = []
    for i in range(3):
        job, _ = jobs.submit(_request(URL + str(i)), "h", float(i))
        job.failed("x", float(i))
        made.append(job)
    jobs.prune(10.0)
    assert jobs.get(made[0].id) is None and jobs.get(made[2].id) is made[2]
    jobs.prune(500.0)
    assert len(jobs) == 0


def test_a_job_fails_with_its_first_failed_task_and_renders_for_both_apis():
    job = preheat.Job(7, _request(), "h", 1_700_000_000.0)
    job.started(1_700_000_001.0)
    job.task_added(D1, "u1")
    job.task_added(D2, "u2")
    job.task_done(D1)
    job.task_failed(D2, "the registry answered 401")
    job.finished(1_700_000_002.0)
    v1 = job.v1()
    assert v1["ID"] == "7" and v1["status"] == "FAILED" and "401" in v1["errorMsg"]
    assert v1["startTime"] == "2023-11-14T22:13:21Z"
    v2 = job.v2("sn", "127.0.0.1")
    assert v2["id"] == 7 and v2["state"] == "FAILURE"
    result = v2["result"]["job_states"][0]["results"][0]
    assert [t["url"] for t in result["success_tasks"]] == ["u1"]
    assert result["failure_tasks"][0]["description"] == "the registry answered 401"


def test_a_v2_job_always_has_dates_go_can_parse():
    v2 = preheat.Job(1, _request(), "h", 1_700_000_000.0).v2("sn", "ip")
    assert v2["state"] == "PENDING"
    assert v2["created_at"] == v2["updated_at"] == "2023-11-14T22:13:20Z"


def test_all_peers_scope_without_a_publish_log_succeeds_into_the_cluster_and_says_so():
    job = preheat.Job(1, PreheatRequest("file", "http://o/f", {}, scope="all_peers"), "h", 0.0)
    job.started(0.0)
    job.finished(1.0)
    assert job.state == "SUCCESS" and "keeps no publish log" in job.v1()["note"]


def test_all_peers_scope_is_another_job_than_the_same_preheat_without_it():
    plain = PreheatRequest("file", "http://o/f", {})
    assert plain.key() != plain._replace(scope="all_peers").key()
    assert plain.key() == plain._replace(scope="all_seed_peers").key()


@pytest.mark.parametrize("text, plain, expected", [
    ("127.0.0.1:5000/team/app:v1", True, ("image", "http://127.0.0.1:5000/v2/team/app/manifests/v1")),
    ("reg.test/team/app@" + D1, False, ("image", "https://reg.test/v2/team/app/manifests/" + D1)),
    ("alpine", False, ("image", "https://registry-1.docker.io/v2/library/alpine/manifests/latest")),
    ("org/app:2", False, ("image", "https://registry-1.docker.io/v2/org/app/manifests/2")),
    (URL, False, ("image", URL)),
    ("http://127.0.0.1:8080/big.iso", False, ("file", "http://127.0.0.1:8080/big.iso")),
    ("ftp://127.0.0.1:2121/v2/a/manifests/b", False, ("file", "ftp://127.0.0.1:2121/v2/a/manifests/b")),
])
def test_the_command_line_target_becomes_a_manifest_or_file_url(text, plain, expected):
    assert preheat.target_url(text, plain) == expected


@pytest.mark.parametrize("text", ["Upper/Case:v1", "reg.test/app:bad tag", "gopher://x/y"])
def test_a_target_that_is_neither_image_nor_url_is_refused(text):
    with pytest.raises(BadRequest):
        preheat.target_url(text)


def test_the_smaller_body_of_harbor_2_12_0_parses_too():
    body = {"type": "preheat", "args": {"type": "image", "url": URL,
                                        "headers": {"Authorization": "Bearer t"}, "scope": ""},
            "scheduler_cluster_ids": None}
    assert preheat.parse_v2(body) == PreheatRequest("image", URL, {"Authorization": "Bearer t"})


def test_a_file_url_is_normalised_as_a_peer_registering_it_would_be():
    req = preheat.parse_v1({"type": "file", "url": "HTTP://Origin.Test:80/dir with space/f.bin#x"})
    assert req.url == "http://origin.test/dir%20with%20space/f.bin"


def test_an_index_names_the_platform_of_each_manifest():
    index = json.dumps({"manifests": [
        {"digest": "sha256:" + "a" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "sha256:" + "b" * 64,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"digest": "sha256:" + "c" * 64}]}).encode()
    assert preheat.manifest_platforms(index) == {"sha256:" + "a" * 64: "linux/amd64",
                                                 "sha256:" + "b" * 64: "linux/arm64/v8"}
    assert preheat.manifest_platforms(b'{"layers": []}') == {} == preheat.manifest_platforms(b"\xff")


def test_an_image_on_an_ipv6_registry_is_written_in_brackets():
    assert preheat.target_url("[::1]:5000/team/app:v1", True) == \
        ("image", "http://[::1]:5000/v2/team/app/manifests/v1")


@pytest.mark.parametrize("text, says", [
    ("::1:5000/team/app:v1", "bad host name"),
    ("[fe80::1%eth0]:5000/team/app:v1", "zone ids"),
    ("[::1/team/app:v1", "bad IPv6 address"),
])
def test_an_image_reference_with_a_malformed_ipv6_registry_is_refused_before_any_connection(
        text, says):
    # export, preheat and publish all read their targets here: a usage error (exit 2),
    # where export connected to the broken host and ended in a source error (exit 3).
    with pytest.raises(BadRequest, match=says):
        preheat.target_url(text)
