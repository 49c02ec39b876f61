import urllib.request

import pytest

from dfly.protocol.redirects import SameHostCredentials, shown_url


def follow(url, newurl):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer t", "Cookie": "c=1",
                                               "X-Trace": "x"})
    return SameHostCredentials().redirect_request(req, None, 302, "Found", {}, newurl)


def test_credentials_follow_a_redirect_on_the_same_host_and_port():
    new = follow("https://reg.example/v2/a", "https://reg.example/v2/b")
    assert new.get_header("Authorization") == "Bearer t"
    assert new.get_header("Cookie") == "c=1"


def test_credentials_are_dropped_on_a_redirect_to_another_host_but_other_headers_stay():
    new = follow("https://reg.example/v2/a", "https://bucket.s3.example/blob?sig=1")
    assert new.get_header("Authorization") is None
    assert new.get_header("Cookie") is None
    assert new.get_header("X-trace") == "x"


def test_credentials_are_dropped_on_a_change_of_scheme_or_port():
    assert follow("https://reg.example/a", "http://reg.example/a").get_header("Authorization") is None
    assert follow("http://reg.example/a", "http://reg.example:8080/a").get_header("Authorization") is None


def test_proxy_credentials_are_dropped_on_a_redirect_to_another_host_too():
    req = urllib.request.Request("https://reg.example/v2/a", headers={"Proxy-Authorization": "Basic p"})
    new = SameHostCredentials().redirect_request(req, None, 302, "Found", {}, "https://cdn.example/b")
    assert new.get_header("Proxy-authorization") is None
    assert not any(name.lower() == "proxy-authorization" for name, _ in new.header_items())


def test_the_same_host_written_in_other_case_keeps_the_credentials():
    new = follow("HTTPS://Reg.Example/v2/a", "https://reg.example/v2/b")
    assert new.get_header("Authorization") == "Bearer t"


def test_the_default_port_written_out_is_another_origin_as_curl_sees_it():
    assert follow("https://reg.example/a", "https://reg.example:443/b").get_header("Authorization") is None


@pytest.mark.parametrize("url, shown", [
    ("https://user:pw@h.example:8443/a/b?X-Amz-Signature=s#frag", "https://h.example:8443/a/b"),
    ("http://[::1]:8080/x?token=t", "http://[::1]:8080/x"),
    ("http://h.example/x", "http://h.example/x"),
    ("http://h.example:99999/x", "http://h.example/x"),
    ("http://h.example/" + "p" * 300, "http://h.example/" + "p" * 199),
])
def test_errors_show_a_url_without_its_query_or_credentials(url, shown):
    assert shown_url(url) == shown
