"""A method a path does not take is a 405 naming the ones it does (RFC 9110's
Allow header), on every listener (one route matcher, httpd.match_route, serves
the daemon's API, the supernode and a peer's uploader). A path nobody serves
stays a 404."""
import json

from daemons import fetch


def test_the_daemon_answers_a_wrong_method_with_405_and_the_methods_it_takes(supernode, daemons):
    running = daemons.start(supernode=[supernode.address])
    for method, path in (("POST", "/metrics"), ("PUT", "/healthz"), ("DELETE", "/v1/stats"),
                         ("POST", "/dashboard"), ("POST", "/v1/dashboard"), ("POST", "/v1/members")):
        status, headers, body = fetch(running.address, method, path, body=b"{}")
        assert (status, headers.get("allow")) == (405, "GET, HEAD"), (method, path)
        assert json.loads(body)["kind"] == "MethodNotAllowed"
    status, headers, _ = fetch(running.address, "GET", "/v1/downloads")
    assert (status, headers.get("allow")) == (405, "POST")
    assert fetch(running.address, "POST", "/no/such/thing", body=b"{}")[0] == 404
    assert fetch(running.address, "HEAD", "/metrics")[0] == 200


def test_the_supernode_names_the_methods_a_path_takes(supernode):
    status, headers, _ = fetch(supernode.address, "POST", "/metrics", body=b"{}")
    assert (status, headers.get("allow")) == (405, "GET, HEAD")
    status, headers, _ = fetch(supernode.address, "DELETE", "/v1/tasks")
    assert (status, headers.get("allow")) == (405, "GET, HEAD, POST")


def test_the_read_only_registry_mirror_names_the_methods_it_takes(origin, daemons):
    running = daemons.start(registry_mirror=origin.url("").rstrip("/"))
    for method in ("PUT", "POST", "DELETE", "PATCH"):
        status, headers, body = fetch(running.address, method, "/v2/team/app/manifests/v1", body=b"{}")
        assert (status, headers.get("allow")) == (405, "GET, HEAD"), method
        assert b"UNSUPPORTED" in body
