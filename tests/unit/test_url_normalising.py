"""Source URLs are normalised once, as curl does, so a URL pasted with raw spaces
or non-ASCII letters is fetched (and is one task however it was typed), and
one that cannot be made valid is refused up front."""
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfly.errors import BadRequest
from dfly.protocol.messages import RegisterRequest
from dfly.protocol.task import task_id
from dfly.protocol.urls import normalize_url

PASTED = "http://HOST/dir with space/ünï cödé.bin"
ENCODED = "http://host/dir%20with%20space/%C3%BCn%C3%AF%20c%C3%B6d%C3%A9.bin"


def test_a_raw_space_and_non_ascii_path_are_percent_encoded_as_curl_does():
    assert normalize_url(PASTED) == ENCODED


def test_one_file_typed_two_ways_is_one_task():
    assert task_id(normalize_url(PASTED)) == task_id(normalize_url(ENCODED))


def test_escapes_already_there_are_kept_as_typed():
    assert normalize_url("http://h/a%2fb%C3%BC") == "http://h/a%2fb%C3%BC"


def test_a_lone_percent_becomes_an_escaped_percent():
    assert normalize_url("http://h/100%.bin?x=5%") == "http://h/100%25.bin?x=5%25"


def test_a_space_in_the_query_is_percent_20():
    assert normalize_url("http://h/f?name=a b") == "http://h/f?name=a%20b"


def test_a_non_ascii_host_becomes_its_idna_form():
    assert normalize_url("http://Bücher.example/x") == "http://xn--bcher-kva.example/x"


@pytest.mark.parametrize("typed, wanted", [
    ("HTTP://Example.COM:80", "http://example.com/"),
    ("https://example.com:443/x", "https://example.com/x"),
    ("http://example.com:8080/x", "http://example.com:8080/x"),
    ("http://example.com:/x", "http://example.com/x"),
    ("http://example.com/x#part-2", "http://example.com/x"),
    ("  http://example.com/x\n", "http://example.com/x"),
    ("http://[::1]:8002/x", "http://[::1]:8002/x"),
    ("http://[0:0::1]/x", "http://[::1]/x"),
    ("http://h/a\tb", "http://h/a%09b"),
    ("http://h/x?", "http://h/x?"),
])
def test_scheme_host_port_fragment_and_surrounding_whitespace_are_normalised(typed, wanted):
    assert normalize_url(typed) == wanted


@pytest.mark.parametrize("bad", [
    "", "example.com/x", "gopher://example.com/x", "file://etc/passwd", "http:/example.com/x",
    "http:///x", "http://exa mple.com/x", "http://a..b/x", "http://h:99999/x", "http://h:0/x",
    "http://h:http/x", "http://h:8０/x", "http://[::1/x", "http://[nope]/x", "http://[fe80::1%25eth0]/x",
    "http://user:secret@h/x", "http://h/\ud800", "http://" + "a" * 64 + ".example/x",
    "http://xn--a-\u00e4\u3002/x",
])
def test_a_url_that_cannot_be_made_valid_is_a_bad_request(bad):
    with pytest.raises(BadRequest):
        normalize_url(bad)


def test_credentials_in_a_refused_url_are_not_repeated_in_the_error():
    with pytest.raises(BadRequest) as refused:
        normalize_url("http://user:secret@h/x")
    assert "secret" not in str(refused.value)


def test_the_supernode_registration_carries_the_normalised_url():
    body = {"url": PASTED, "peer": {"id": "p1", "port": 1}}
    assert RegisterRequest.parse(body).url == ENCODED
    with pytest.raises(BadRequest):
        RegisterRequest.parse(dict(body, url="http://exa mple/x"))


_SENDABLE = re.compile(r"\A[\x21-\x7e]+\Z")


@settings(max_examples=150, deadline=None, database=None)
@given(st.text(max_size=40), st.text(max_size=20))
def test_any_path_and_query_give_a_sendable_url_that_normalising_again_keeps(path, query):
    url = normalize_url("http://127.0.0.1:8000/%s?%s" % (path, query))
    assert _SENDABLE.match(url)
    assert url.startswith("http://127.0.0.1:8000/")   # the path never moves the host
    assert normalize_url(url) == url


@settings(max_examples=150, deadline=None, database=None)
@given(st.text(max_size=40))
def test_any_text_is_a_valid_url_or_a_bad_request(text):
    try:
        url = normalize_url(text)
    except BadRequest:
        return
    assert _SENDABLE.match(url) and normalize_url(url) == url


def test_ftp_s3_and_file_urls_are_normalised_and_only_ftp_carries_credentials():
    assert normalize_url("FTP://u:p@127.0.0.1:21/a b") == "ftp://u:p@127.0.0.1/a%20b"
    assert normalize_url("s3://Bucket/key/x.bin") == "s3://bucket/key/x.bin"
    assert normalize_url("file://localhost/srv/a b") == "file:///srv/a%20b"
    for bad in ("s3://bucket", "s3://bucket:9000/k", "file://host/x", "https://u:p@h/x"):
        with pytest.raises(BadRequest):
            normalize_url(bad)
