import io
import urllib.error
import urllib.request

import pytest

from dfly.errors import SourceDenied
from dfly.protocol.redact import shown_url
from dfly.protocol.redirects import SameHostCredentials, _check_url
from dfly.protocol.sourcepolicy import SourcePolicy


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
    ("http:///x", "http:///x"),
    ("http://h.example/" + "p" * 300, "http://h.example/" + "p" * 199),
])
def test_errors_show_a_url_without_its_query_or_credentials(url, shown):
    assert shown_url(url) == shown


def test_with_a_source_policy_a_redirect_to_a_denied_host_is_refused_saying_so():
    handler = SameHostCredentials()
    handler.policy = SourcePolicy.parse(deny=["admin.corp"])
    req = urllib.request.Request("https://reg.example/v2/a", headers={"Authorization": "Bearer t"})
    with pytest.raises(SourceDenied) as denied:
        handler.redirect_request(req, None, 302, "Found", {}, "http://admin.corp/x?sig=s")
    assert str(denied.value) == ("a redirect to source http://admin.corp/x denied by the "
                                 "supernode's source policy: host admin.corp is denied")
    allowed = handler.redirect_request(req, None, 302, "Found", {}, "https://cdn.example/b")
    assert allowed.full_url == "https://cdn.example/b"


def test_a_redirect_to_a_scheme_dfly_does_not_fetch_is_an_http_error_naming_it():
    req, body = urllib.request.Request("https://reg.example/v2/a"), io.BytesIO(b"moved")
    with pytest.raises(urllib.error.HTTPError) as refused:
        SameHostCredentials().redirect_request(req, body, 302, "Found", {"X": "1"}, "ftp://h/x")
    error = refused.value
    assert error.read() == b"moved"
    assert (error.url, error.code) == ("ftp://h/x", 302)
    assert error.msg == "redirect to a scheme dfly does not fetch"
    assert error.hdrs == {"X": "1"}


def test_the_source_policy_check_names_what_was_denied_and_why():
    policy = SourcePolicy.parse(deny=["admin.corp"])
    _check_url(policy, "https://ok.example/x")
    with pytest.raises(SourceDenied) as denied:
        _check_url(policy, "http://u:p@admin.corp/x?token=t")
    assert str(denied.value) == ("source http://admin.corp/x denied by the supernode's source "
                                 "policy: host admin.corp is denied")
    assert denied.value.detail == "host admin.corp is denied"


def test_with_a_source_policy_a_redirect_to_another_scheme_is_denied_saying_so():
    handler = SameHostCredentials()
    handler.policy = SourcePolicy.parse()
    req = urllib.request.Request("https://reg.example/v2/a")
    with pytest.raises(SourceDenied) as denied:
        handler.redirect_request(req, None, 302, "Found", {}, "file:///etc/passwd")
    assert str(denied.value) == ("a redirect to source file:///etc/passwd denied by the supernode's "
                                 "source policy: a redirect leads to http or https only")
    assert denied.value.detail == "a redirect leads to http or https only"
