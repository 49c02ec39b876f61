"""What a non-HTTP source answers (sources/answer.py), pure: size and validators
in, HTTP's status and headers out; s3 credentials found in the usual places;
odd schemes refused in one sentence."""
import io
import urllib.error

import pytest

from dfly.errors import SourceError
from dfly.sources import open_source
from dfly.sources.answer import Stat, answer
from dfly.sources.config import SourceOptions
from dfly.sources.ftp import _mdtm
from dfly.sources.s3 import object_url

STAT = Stat(10, '"v1"', "Sun, 06 Dec 2026 10:00:00 GMT")
BODY = b"0123456789"


def ask(headers, body=BODY, stat=STAT):
    return answer("ftp://h/f", stat, headers, lambda offset: io.BytesIO(body[offset:]),
                  lambda: None)


def test_no_conditions_is_the_whole_file_with_its_validators():
    r = ask({})
    assert (r.status, r.headers["Content-Length"], r.headers["ETag"]) == (200, "10", '"v1"')
    assert r.read() == BODY


def test_a_range_with_a_matching_if_range_is_a_206_from_the_offset():
    r = ask({"Range": "bytes=4-", "If-Range": '"v1"'})
    assert (r.status, r.headers["Content-Range"]) == (206, "bytes 4-9/10")
    assert r.read() == b"456789"
    bounded = ask({"Range": "bytes=2-3"})
    assert bounded.read(100) == b"23" and bounded.read(100) == b""


def test_a_range_whose_if_range_no_longer_matches_is_the_whole_new_file():
    r = ask({"Range": "bytes=4-", "If-Range": '"v0"'})
    assert r.status == 200 and r.read() == BODY


def test_an_unchanged_source_is_304_and_a_range_past_the_end_416():
    for headers in ({"If-None-Match": '"v1"'}, {"If-Modified-Since": STAT.last_modified}):
        with pytest.raises(urllib.error.HTTPError) as e:
            ask(headers)
        assert e.value.code == 304
    with pytest.raises(urllib.error.HTTPError) as e:
        ask({"Range": "bytes=10-"})
    assert e.value.code == 416


def test_a_source_that_sends_more_than_its_size_is_an_error_not_a_longer_file():
    r = ask({}, body=BODY + b"extra")
    with pytest.raises(SourceError, match="more than"):
        while r.read(4):
            pass


def test_mdtm_replies_become_seconds_and_garbage_becomes_none():
    assert _mdtm("213 20261206100000") == 1796551200
    assert _mdtm("213 20261206100000.123") == 1796551200
    assert _mdtm("213 yesterday") is None


def _first_keys(options, environ):
    from dfly.sources.credentials import gather
    found = gather(options, dict(environ, AWS_EC2_METADATA_DISABLED="true")).s3.get(0.0)
    return found[:3] if found else None


def test_s3_credentials_come_from_options_then_environment_then_the_shared_file(tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = AKD\naws_secret_access_key = SD\n"
                     "[ci]\naws_access_key_id = AKC\naws_secret_access_key = SC\n"
                     "aws_session_token = TC\n")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(creds)}
    assert _first_keys(SourceOptions(), env)[:2] == ("AKD", "SD")
    assert _first_keys(SourceOptions(), dict(env, AWS_PROFILE="ci")) == ("AKC", "SC", "TC")
    assert _first_keys(SourceOptions(), dict(env, AWS_ACCESS_KEY_ID="E",
                                             AWS_SECRET_ACCESS_KEY="ES"))[:2] == ("E", "ES")
    assert _first_keys(SourceOptions(s3_access_key_id="O", s3_secret_access_key="OS"),
                       env)[:2] == ("O", "OS")
    assert _first_keys(SourceOptions(), {"HOME": str(tmp_path)}) is None


def test_s3_objects_are_virtual_hosted_at_aws_and_path_style_at_an_endpoint():
    assert object_url("b", "k/x y", SourceOptions(), "eu-west-1") == \
        "https://b.s3.eu-west-1.amazonaws.com/k/x%20y"
    assert object_url("b", "k", SourceOptions()) == "https://b.s3.amazonaws.com/k"   # region unknown
    assert object_url("b", "k", SourceOptions(s3_endpoint="http://127.0.0.1:9000/")) == \
        "http://127.0.0.1:9000/b/k"


def test_a_scheme_no_source_reads_is_refused_in_one_sentence():
    with pytest.raises(SourceError, match="scheme 'gopher' is not a source dfly reads"):
        open_source("gopher://h/x")


def test_ftp_credentials_come_from_the_url_else_netrc_else_anonymous(tmp_path):
    from urllib.parse import urlsplit

    from dfly.sources.credentials import gather
    from dfly.sources.ftp import credentials
    rc = tmp_path / "netrc"
    rc.write_text("machine ftp.example.com login mirror password from-netrc\n")
    rc.chmod(0o600)
    off = {"AWS_EC2_METADATA_DISABLED": "true"}   # no test may ask a metadata service
    known = gather(SourceOptions(source_netrc=str(rc)), dict(off, HOME=str(tmp_path)))
    assert credentials(urlsplit("ftp://u:p%40ss@ftp.example.com/x"), known) == ("u", "p@ss")
    assert credentials(urlsplit("ftp://ftp.example.com/x"), known) == ("mirror", "from-netrc")
    assert credentials(urlsplit("ftp://other.example.com/x"), known) == ("anonymous", "anonymous@")
    (tmp_path / ".netrc").write_text("default login any password from-home\n")
    (tmp_path / ".netrc").chmod(0o600)
    home = gather(SourceOptions(), dict(off, HOME=str(tmp_path)))   # ~/.netrc, from the given HOME
    assert credentials(urlsplit("ftp://other.example.com/x"), home) == ("any", "from-home")
