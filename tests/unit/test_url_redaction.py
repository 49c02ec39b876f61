"""What of a task URL anyone may see: no userinfo, no query value, no fragment."""
import pytest

from dfly.protocol.redact import redact_text, redact_url, redact_urls_in


@pytest.mark.parametrize("url, shown", [
    ("http://origin/f.iso", "http://origin/f.iso"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Signature=abc123",
     "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=***&X-Amz-Signature=***"),
    ("http://user:pw@origin:8080/f?token=t&sig=s", "http://***@origin:8080/f?token=***&sig=***"),
    ("http://origin/f?sekrit", "http://origin/f?***"),
    ("http://origin/f?a=&b", "http://origin/f?a=***&***"),
    ("http://origin/f#access_token=x", "http://origin/f"),
    ("http://[::1]:80/f?k=v", "http://[::1]:80/f?k=***"),
    ("http://[::1/f?k=v", "***"),
])
def test_secrets_are_taken_out_of_a_url(url, shown):
    assert redact_url(url) == shown


def test_an_error_text_shows_the_url_redacted():
    url = "http://origin/f?token=hunter2"
    assert redact_text("origin answered 404 for %s" % url, url) == \
        "origin answered 404 for http://origin/f?token=***"
    assert redact_text("", url) == ""


def test_ftp_and_s3_urls_lose_their_credentials_and_queries_too():
    assert redact_url("ftp://mirror:s3cret@ftp.example.com:2121/pub/a.iso") == \
        "ftp://***@ftp.example.com:2121/pub/a.iso"
    assert redact_url("ftps://u@h/a") == "ftps://***@h/a"
    assert redact_url("s3://bucket/key/a.bin?versionId=abc") == "s3://bucket/key/a.bin?versionId=***"
    assert redact_urls_in("failed: ftp://u:pw@h/x.") == "failed: ftp://***@h/x."
