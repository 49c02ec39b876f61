"""Preheat jobs shown in Dragonfly's v2 form and preheat targets at their edges
(survivors of a mutation run of protocol/preheat.py, docs/TESTING.md): the v2
body is read by Dragonfly's own clients, so its every key and value is pinned."""
import json
import re
import time

import pytest

from dfly.errors import BadRequest
from dfly.protocol.preheat import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_MANIFEST_BYTES,
    SCOPE_ALL_PEERS,
    BadManifest,
    Blob,
    ImageRef,
    Job,
    Jobs,
    Limits,
    PreheatRequest,
    TooMany,
    image_ref,
    parse_job_id,
    parse_v1,
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


# The second mutation run's survivors, function by function (docs/TESTING.md).

def refused(parse, body, says):
    with pytest.raises(BadRequest) as caught:
        parse(body)
    assert says in str(caught.value), str(caught.value)


@pytest.mark.parametrize("parse", [parse_v1, parse_v2])
def test_a_body_that_is_not_an_object_is_refused_as_such(parse):
    refused(parse, ["type"], "the body must be a JSON object")


@pytest.mark.parametrize("name", ["image", "tag", "digest", "scope"])
def test_each_optional_v1_field_must_be_a_short_string(name):
    body = {"type": "file", "url": "http://o/f"}
    refused(parse_v1, dict(body, **{name: 7}), "field %r: must be a string" % name)
    refused(parse_v1, dict(body, **{name: "x" * 1025}), "field %r: must be a string" % name)
    if name != "scope":
        assert parse_v1(dict(body, **{name: "x" * 1024})).url == "http://o/f"


@pytest.mark.parametrize("name", ["tag", "username", "password"])
def test_each_optional_v2_argument_must_be_a_string(name):
    refused(parse_v2, job_body(**{name: ["x"]}), "field 'args.%s': must be a string" % name)


@pytest.mark.parametrize("name", ["concurrent_count", "timeout"])
def test_a_v2_count_must_be_an_integer_and_not_a_boolean(name):
    refused(parse_v2, job_body(**{name: True}), "field 'args.%s': must be an integer" % name)
    assert parse_v2(job_body(**{name: 3})).kind == "file"


def test_a_v2_body_of_another_type_is_refused_naming_what_it_got():
    refused(parse_v2, {"type": "sync_peers", "args": {}},
            "field 'type': only 'preheat' jobs are run here, got 'sync_peers'")
    refused(parse_v2, {"type": "preheat", "args": []}, "field 'args': must be an object")


def test_scheduler_cluster_ids_are_a_list_of_integers():
    assert parse_v2(dict(job_body(), scheduler_cluster_ids=[1, 2])).kind == "file"
    for ids in ([True], 1, [1, "2"]):
        refused(parse_v2, dict(job_body(), scheduler_cluster_ids=ids),
                "field 'scheduler_cluster_ids': must be a list of integers")


def test_the_camel_case_spelling_of_the_filters_is_read_too():
    assert parse_v2(job_body(filteredQueryParams="Expires")).filters == ("Expires",)
    assert parse_v2(job_body(filtered_query_params="a", filteredQueryParams="b")).filters == ("a",)


def test_filters_split_on_ampersands_and_commas_up_to_1024_characters():
    assert parse_v2(job_body(filtered_query_params="a,b&&c")).filters == ("a", "b", "c")
    assert len(parse_v2(job_body(filtered_query_params="a" * 1024)).filters) == 1
    for value in ("a" * 1025, 7):
        refused(parse_v2, job_body(filtered_query_params=value),
                "field 'args.filtered_query_params': must be a string like 'Expires&Signature'")


def test_platforms_are_a_comma_list_or_a_json_list_of_at_most_16():
    assert parse_v2(job_body(platform=" linux/amd64 ,linux/arm/v7")).platforms \
        == ("linux/amd64", "linux/arm/v7")
    assert parse_v2(job_body(platform=["linux/amd64"])).platforms == ("linux/amd64",)
    assert parse_v2(job_body(platform="")).platforms == ()
    many = ["linux/a%d" % i for i in range(16)]
    assert len(parse_v2(job_body(platform=many)).platforms) == 16
    for value in (many + ["linux/x"], 5, ["linux/amd64", 5], "a" * 33 + "/amd64"):
        refused(parse_v2, job_body(platform=value),
                "field 'args.platform': must be os/arch[/variant] (as linux/amd64), or a list of them")


def test_a_choice_and_a_scope_name_what_is_allowed_and_what_came():
    refused(parse_v2, job_body(type="video"), "field 'args.type': must be one of image/file, got 'video'")
    refused(parse_v1, {"type": None, "url": "http://o/f"}, "must be one of image/file, got None")
    refused(parse_v1, {"type": 5, "url": "http://o/f"}, "must be one of image/file, got 'int'")
    refused(parse_v2, job_body(scope="x"),
            "field 'args.scope': must be one of single_seed_peer/all_seed_peers/all_peers, got 'x'")
    assert parse_v1({"type": "file", "url": "http://o/f", "scope": "all_peers"}).scope == "all_peers"
    assert parse_v2(job_body(scope=None)).scope == ""


def test_a_long_value_is_shown_cut_to_64_characters():
    with pytest.raises(BadRequest) as caught:
        parse_v2(job_body(type="v" * 100))
    assert str(caught.value).endswith("got '%s'" % ("v" * 64))


@pytest.mark.parametrize("url", ["reg.example/v2/a/manifests/b", "ftp://reg.example/v2/a/manifests/b",
                                 "https://reg.example", "https://reg.example/a/manifests/b"])
def test_an_image_url_must_be_an_http_manifest_url(url):
    with pytest.raises(BadRequest) as caught:
        image_ref(url, "args.url")
    assert str(caught.value) == ("field 'args.url': an image preheat needs a manifest URL "
                                 "(http(s)://REGISTRY/v2/REPOSITORY/manifests/TAG), got %r" % url)


def test_an_image_url_is_read_with_its_scheme_in_any_case_and_its_manifest_url_rebuilt():
    ref = image_ref("HTTPS://reg.example/v2/team/app/manifests/v1")
    assert ref == ImageRef("HTTPS://reg.example", "team/app", "v1")
    assert ref.manifest_url(DIGEST) == "HTTPS://reg.example/v2/team/app/manifests/" + DIGEST


def test_an_image_url_naming_a_blob_or_a_bad_name_is_refused_naming_the_field():
    with pytest.raises(BadRequest, match=r"^field 'w': not a manifest URL \(\.\.\./v2/REPOSITORY/"
                                         r"manifests/TAG\): 'http://r/v2/a/blobs/"):
        image_ref("http://r/v2/a/blobs/" + DIGEST, "w")
    with pytest.raises(BadRequest, match="^field 'w': "):
        image_ref("http://r/v2/Bad/manifests/v1", "w")
    with pytest.raises(BadRequest, match="^field 'url': "):
        image_ref("http://r/v2/a/blobs/" + DIGEST)


def entry(digest, **platform):
    return {"digest": digest, "size": 1, "platform": platform}


D = ["sha256:" + c * 64 for c in "0123456789"]


def index(*entries) -> bytes:
    return json.dumps({"mediaType": INDEX_TYPES[0], "manifests": list(entries)}).encode()


def test_a_platform_asked_without_its_variant_takes_every_variant_and_with_it_only_that_one():
    body = index(entry(D[0], os="linux", architecture="arm", variant="v7"),
                 entry(D[1], os="linux", architecture="arm", variant="v6"),
                 entry(D[2], os="linux", architecture="amd64"))
    assert walk(body, "", ("linux/arm",)).manifests == [D[0], D[1]]
    assert walk(body, "", ("linux/arm/v7",)).manifests == [D[0]]
    assert walk(body, "", ("linux/amd64", "linux/arm/v6")).manifests == [D[1], D[2]]
    assert walk(body, "").manifests == [D[0], D[1], D[2]]


def test_a_platform_is_read_from_its_parts_and_a_missing_part_is_empty():
    body = index(entry(D[0], architecture="amd64"), entry(D[1], os="linux", variant=7),
                 {"digest": D[2], "platform": "linux/amd64"})
    assert walk(body, "", ("/amd64",)).manifests == [D[0]]
    assert walk(body, "", ("linux/",)).manifests == [D[1]]
    with pytest.raises(BadManifest, match="^the index has no manifest for platform linux/amd64, x/y$"):
        walk(body, "", ("linux/amd64", "x/y"))


def test_an_index_lists_at_most_64_manifests_each_with_a_digest_once():
    same = [entry(D[0], os="linux", architecture="amd64")] * 64
    assert walk(index(*same), "").manifests == [D[0]]
    with pytest.raises(BadManifest, match="^an index must list at most 64 manifests$"):
        walk(index(*same + same[:1]), "")
    for bad in ({"size": 1}, "x", {"digest": "sha256:x"}):
        with pytest.raises(BadManifest, match="^an index entry has no valid digest$"):
            walk(index(bad), "")
    with pytest.raises(BadManifest, match="^an index must list at most 64 manifests$"):
        walk(json.dumps({"mediaType": INDEX_TYPES[0], "manifests": {}}).encode(), "")


def image(config, layers) -> bytes:
    return json.dumps({"mediaType": MANIFEST_TYPES[0], "config": config, "layers": layers}).encode()


def test_a_manifest_names_at_most_4096_layers_each_with_a_digest_and_a_size():
    config = {"digest": D[0], "size": 0}
    layers = [{"digest": D[1], "size": 5}] * 4096
    assert walk(image(config, layers), "").blobs == [Blob(D[0], 0), Blob(D[1], 5)]
    for cfg, lay in ((config, layers + layers[:1]), (None, []), (config, {})):
        with pytest.raises(BadManifest, match="^a manifest must have a config and at most 4096 layers$"):
            walk(image(cfg, lay), "")
    for bad in ({"digest": D[1], "size": -1}, {"digest": D[1], "size": True}, {"digest": D[1]},
                {"size": 1}, {"digest": "sha256:x", "size": 1}, "x"):
        with pytest.raises(BadManifest, match="^a manifest entry has no valid digest and size$"):
            walk(image(config, [bad]), "")


def test_progress_counts_the_tasks_done_of_the_tasks_known():
    job = Job(1, PreheatRequest("file", "http://o/f", {}), "c", created_at=0.0)
    assert job.progress() == (0, 0)
    for key in "abc":
        job.task_added(key, "u" + key)
    job.task_done("a")
    job.task_failed("b", "x")
    assert job.progress() == (1, 3)


def test_dates_are_to_the_second_in_utc():
    job = Job(1, PreheatRequest("file", "http://o/f", {}), "c", created_at=1_700_000_000.9)
    job.started(1_700_003_661.0)
    assert job.v1()["startTime"] == "2023-11-14T23:14:21Z" and job.v1()["finishTime"] == ""
    assert job.v2("h", "ip")["created_at"] == "2023-11-14T22:13:20Z"


def request(n) -> PreheatRequest:
    return PreheatRequest("file", "http://o/f%d" % n, {})


def test_a_success_is_fresh_strictly_within_fresh_s_and_a_failure_never():
    jobs = Jobs(Limits(fresh_s=60))
    job, _ = jobs.submit(request(0), "c", 0.0)
    job.started(0.0)
    job.finished(10.0)
    assert jobs.submit(request(0), "c", 69.9) == (job, False)
    again, new = jobs.submit(request(0), "c", 70.0)
    assert new and again.id == 2
    again.failed("x", 71.0)
    third, new = jobs.submit(request(0), "c", 72.0)
    assert new and third.id == 3


def test_the_limits_are_reached_exactly_and_say_so():
    jobs = Jobs(Limits(max_per_client=2, max_waiting=3))
    jobs.submit(request(0), "c", 0.0)
    jobs.submit(request(1), "c", 0.0)
    with pytest.raises(TooMany, match="^c has 2 preheats waiting or running: try again later$"):
        jobs.submit(request(2), "c", 0.0)
    done, _ = jobs.submit(request(3), "d", 0.0)
    with pytest.raises(TooMany, match="^3 preheats are waiting or running: try again later$"):
        jobs.submit(request(4), "e", 0.0)
    done.failed("x", 1.0)
    assert jobs.submit(request(4), "e", 1.0)[1]


def test_finished_jobs_are_kept_keep_s_inclusive_and_the_oldest_go_first_past_max_records():
    jobs = Jobs(Limits(max_records=2, keep_s=100))
    made = [jobs.submit(request(i), "c%d" % i, 0.0)[0] for i in range(4)]
    for job, at in zip(made, (30.0, 10.0, 20.0, 40.0)):
        job.failed("x", at)
    jobs.prune(110.0)
    assert [jobs.get(j.id) is j for j in made] == [True, False, False, True]
    jobs.prune(130.0)
    assert [jobs.get(j.id) is j for j in made] == [True, False, False, True]
    jobs.prune(130.1)
    assert [jobs.get(j.id) is j for j in made] == [False, False, False, True]
    running = jobs.submit(request(9), "c", 131.0)[0]
    jobs.prune(10 ** 6)
    assert jobs.get(running.id) is running and len(jobs) == 1


def test_a_url_is_refused_naming_its_field_when_missing_or_over_8192_characters():
    refused(parse_v2, job_body(url=""), "field 'args.url': missing (the URL to preheat)")
    long = "http://o/" + "a" * (8192 - 9)
    assert parse_v2(job_body(url=long)).url == long
    with pytest.raises(BadRequest, match="^field 'URL': over 8192 characters$"):
        target_url(long + "a")
    with pytest.raises(BadRequest, match="^field 'args.url': "):
        parse_v2(job_body(url="http://[::1"))


@pytest.mark.parametrize("headers", [{"A": 5}, {"A": None}, {"A:B": "v"}, {"": "v"}])
def test_a_header_that_is_not_a_name_and_a_string_is_refused(headers):
    refused(parse_v2, job_body(headers=headers), "field 'args.headers': bad header")


def test_a_manifest_is_known_by_a_content_type_with_parameters():
    walked = walk(index_body(), INDEX_TYPES[0] + "; charset=utf-8")
    assert walked.manifests == [DIGEST] and walked.blobs == []
    with pytest.raises(BadManifest, match="^the registry's manifest is not a JSON object$"):
        walk(b"[]", "")
    with pytest.raises(BadManifest, match="^the registry's manifest is not JSON$"):
        walk(b"{", "")


def test_a_plain_job_that_succeeds_has_no_note_and_an_unfinished_task_fails_it():
    job = Job(1, PreheatRequest("file", "http://o/f", {}), "c", created_at=0.0)
    job.started(1.0)
    job.finished(2.0)
    assert job.v1() == {"ID": "1", "status": "SUCCESS", "startTime": "1970-01-01T00:00:01Z",
                        "finishTime": "1970-01-01T00:00:02Z", "errorMsg": "", "note": ""}
    job = Job(2, PreheatRequest("file", "http://o/f", {}), "c", created_at=0.0)
    job.task_added("a", "u")
    job.finished(3.0)
    assert (job.state, job.error) == ("FAILED", "not finished")


def test_a_preheat_id_is_one_to_twelve_digits():
    assert parse_job_id("000000000012") == 12
    for text in ("", "1" * 13, "1a", " 1"):
        with pytest.raises(BadRequest, match="^a preheat id is a number, got %s$" % re.escape(repr(text))):
            parse_job_id(text)


def test_a_target_with_two_digests_or_no_image_says_what_it_should_be():
    with pytest.raises(BadRequest, match="^not an image reference"):
        target_url("reg.test/app@a@b")
    with pytest.raises(BadRequest) as caught:
        target_url("Upper/Case:v1")
    assert str(caught.value) == ("not an image reference (REGISTRY/REPOSITORY[:TAG][@DIGEST]) nor an "
                                 "http(s) URL: 'Upper/Case:v1'")
    with pytest.raises(BadRequest) as caught:
        target_url("[::1/app")
    assert str(caught.value).startswith("bad registry in image reference '[::1/app': ")
    assert str(caught.value).endswith(" (an IPv6 registry is written [ADDR]:PORT/REPOSITORY)")


def test_a_bad_v1_scope_is_refused_naming_the_field():
    refused(parse_v1, {"type": "file", "url": "http://o/f", "scope": "x"},
            "field 'scope': must be one of single_seed_peer/all_seed_peers/all_peers, got 'x'")


def test_the_first_v2_of_an_image_url_starts_the_repository():
    assert image_ref("https://h/v2/x/v2/a/manifests/b") == ImageRef("https://h", "x/v2/a", "b")


def test_dates_are_in_utc_whatever_the_local_time_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        job = Job(1, PreheatRequest("file", "http://o/f", {}), "c", created_at=0.0)
        assert job.v2("h", "ip")["created_at"] == "1970-01-01T00:00:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_job_is_created_at_its_submission_and_one_finished_at_zero_is_the_oldest():
    jobs = Jobs(Limits(max_records=1, keep_s=100))
    first = jobs.submit(request(0), "c", 0.0)[0]
    second = jobs.submit(request(1), "c", 0.0)[0]
    assert first.created_at == 0.0 and jobs.submit(request(2), "c", 5.0)[0].created_at == 5.0
    first.failed("x", 0.0)
    second.failed("x", 0.5)
    jobs.prune(50.0)
    assert jobs.get(first.id) is None and jobs.get(second.id) is second
    third = jobs.get(3)
    third.failed("x", 0.0)
    jobs.prune(100.2)
    assert jobs.get(third.id) is None


def test_a_job_finished_at_zero_is_forgotten_keep_s_later():
    jobs = Jobs(Limits(keep_s=100))
    job = jobs.submit(request(0), "c", 0.0)[0]
    job.failed("x", 0.0)
    jobs.prune(100.0)
    assert jobs.get(job.id) is job
    jobs.prune(100.5)
    assert jobs.get(job.id) is None
