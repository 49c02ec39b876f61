"""Preheat jobs shown in Dragonfly's v2 form and preheat targets at their edges
(survivors of a mutation run of protocol/preheat.py, docs/TESTING.md): the v2
body is read by Dragonfly's own clients, so its every key and value is pinned."""
import pytest

from dfly.protocol.preheat import SCOPE_ALL_PEERS, Job, PreheatRequest, target_url

MANIFEST = "https://reg.example/v2/team/app/manifests/v1"


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
