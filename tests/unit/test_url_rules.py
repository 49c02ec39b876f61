"""The edges of source URL normalising (protocol/urls.py): the printable ASCII
range kept raw, the port and host-length bounds, and the words of each refusal
(they reach get's one-line error), each pinned by a surviving mutant."""
import pytest

from dfly.errors import BadRequest
from dfly.protocol.urls import MAX_HOST_LEN, normalize_url


def test_the_ends_of_printable_ascii_stay_raw_in_path_and_query():
    assert normalize_url("http://h/!~user?a=!~") == "http://h/!~user?a=!~"
    assert normalize_url("http://h/\x7f?a\x20b") == "http://h/%7F?a%20b"


def test_ports_1_and_65535_are_ports_and_65536_is_not():
    assert normalize_url("http://h:1/x") == "http://h:1/x"
    assert normalize_url("http://h:65535/x") == "http://h:65535/x"
    with pytest.raises(BadRequest):
        normalize_url("http://h:65536/x")


def test_a_host_name_may_be_as_long_as_dns_allows_and_no_longer():
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(longest) == MAX_HOST_LEN
    assert normalize_url("http://%s/x" % longest) == "http://%s/x" % longest
    with pytest.raises(BadRequest):
        normalize_url("http://%s/x" % (longest + "b"))


@pytest.mark.parametrize("url, says", [
    ("example.com/x", "not an absolute http or https URL: 'example.com/x'"),
    ("gopher://h/x", "source URL must be http"),
    ("http://user:pw@h/x", "credentials in a URL are not supported (pass an Authorization header instead)"),
    ("http://[nope]/x", "bad IPv6 address in URL: 'http://[nope]/x'"),
    ("http://[fe80::1%25eth0]/x", "IPv6 zone ids are not supported in URLs"),
    ("http://xn--a-\u00e4\u3002/x", "host name cannot be encoded (IDNA)"),
    ("http://a..b/x", "bad host name in URL: 'http://a..b/x'"),
    ("http://h:0/x", "bad port in URL: 'http://h:0/x'"),
    ("http://[::1]:99999/x", "bad port in URL: 'http://[::1]:99999/x'"),
    ("http://h/x?\ud800", "URL is not valid text: 'http://h/x?\\ud800'"),
    ("s3://bucket//", "an s3 URL is s3://BUCKET/KEY: 's3://bucket//'"),
    ("s3://bucket:9000/k", "an s3 URL is s3://BUCKET/KEY"),
    ("file://host/etc/x", "a file URL is file:///ABSOLUTE/PATH: 'file://host/etc/x'"),
    ("file:///a\ud800", "URL is not valid text: 'file:///a\\ud800'"),
    ("ftp://\ud800@h/f", "URL is not valid text: 'ftp://\\ud800@h/f'"),
    ("http://[::1/x", "bad IPv6 address in URL: 'http://[::1/x'"),
])
def test_each_refusal_names_the_fault_and_quotes_the_url(url, says):
    with pytest.raises(BadRequest) as refused:
        normalize_url(url)
    assert says in str(refused.value)


def test_control_characters_a_paste_leaves_around_a_url_are_stripped():
    assert normalize_url("\x00\x1f http://h/x\x0b") == "http://h/x"


def test_ftp_credentials_end_at_the_last_at_sign():
    assert normalize_url("ftp://u@x:p@h/f") == "ftp://u@x:p@h/f"
