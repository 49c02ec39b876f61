"""The pure rules of the daemon hand-off: which requests count as `dfly get`'s."""
import pytest

from dfly.errors import BadRequest, Forbidden
from dfly.protocol.handoff import (
    TOKEN_FILE,
    HandoffRequest,
    UnsupportedMediaType,
    check_handoff,
    loopback_host,
    proof,
    proof_valid,
)

TOKEN = "ab" * 32
GOOD = {"Host": "127.0.0.1:65001", "Content-Type": "application/json; charset=utf-8",
        "Authorization": "Bearer " + TOKEN}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:65001", "127.9.9.9:1", "localhost",
                                  "LOCALHOST:65001", "[::1]:65001", "::1", "localhost.:65001"])
def test_loopback_names_are_accepted_as_host(host):
    assert loopback_host(host)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:65001", "10.0.0.1:65001",
                                  "[fe80::1]:65001", "localhost.evil.example", "", "127.0.0.1.nip.io"])
def test_other_names_are_not(host):
    assert not loopback_host(host)


def test_the_request_dfly_get_sends_passes():
    check_handoff(GOOD, TOKEN)
    check_handoff(list(GOOD.items()), TOKEN)


@pytest.mark.parametrize("name, value, error", [
    ("Authorization", "Bearer " + "cd" * 32, Forbidden),
    ("Authorization", "Basic " + TOKEN, Forbidden),
    ("Content-Type", "text/plain", BadRequest),
    ("Content-Type", "application/x-www-form-urlencoded", BadRequest),
    ("Origin", "null", Forbidden),
    ("Forwarded", "for=10.0.0.9", Forbidden),
    ("Host", "attacker.example", Forbidden),
])
def test_anything_else_is_refused(name, value, error):
    with pytest.raises(error):
        check_handoff(dict(GOOD, **{name: value}), TOKEN)


def test_two_host_headers_are_refused():
    with pytest.raises(Forbidden):
        check_handoff(list(GOOD.items()) + [("Host", "evil.example")], TOKEN)


def test_an_empty_token_never_matches():
    with pytest.raises(Forbidden):
        check_handoff(dict(GOOD, Authorization="Bearer "), "")


def test_the_proof_shows_the_token_was_known_without_showing_it():
    answer = proof(TOKEN, "c1")
    assert TOKEN not in answer
    assert proof_valid(TOKEN, "c1", answer)
    assert not proof_valid(TOKEN, "c2", answer)
    assert not proof_valid("ef" * 32, "c1", answer)
    assert not proof_valid(TOKEN, "c1", None)
    assert not proof_valid(TOKEN, "c1", "\u20ac")


def test_a_request_without_a_host_header_is_refused():
    with pytest.raises(Forbidden, match="Host must name"):
        check_handoff({k: v for k, v in GOOD.items() if k != "Host"}, TOKEN)


def test_the_media_type_is_read_before_its_first_parameter_only():
    check_handoff(dict(GOOD, **{"Content-Type": "Application/JSON ; charset=utf-8; x=y"}), TOKEN)


def test_the_token_may_follow_the_scheme_after_more_than_one_space():
    check_handoff(dict(GOOD, Authorization="bearer   " + TOKEN), TOKEN)


@pytest.mark.parametrize("name, value, error, says", [
    ("Sec-Fetch-Site", "cross-site", Forbidden, "browser requests (Origin, Sec-Fetch-*)"),
    ("Via", "1.1 proxy", Forbidden, "came through a proxy"),
    ("Host", "evil.example", Forbidden, "Host must name this host's loopback address"),
    ("Content-Type", "text/plain", UnsupportedMediaType, "needs Content-Type: application/json"),
    ("Authorization", "Bearer x", Forbidden, "missing or wrong token (%s)" % TOKEN_FILE),
])
def test_each_refusal_says_which_rule_the_request_broke(name, value, error, says):
    with pytest.raises(error) as refused:
        check_handoff(dict(GOOD, **{name: value}), TOKEN)
    assert str(refused.value).startswith("hand-off ") and says in str(refused.value)


def test_the_proof_is_the_one_every_dfly_version_computes():
    """get and the daemon may be two versions: the proof is part of the protocol."""
    assert proof(TOKEN, "c1") == "68d47907b1d5632043a7381ecdc2b0cbabed223d55e03f3048addf053c854456"


FULL = {"url": "HTTP://Example.COM:80/a b", "output": "/tmp/x/../out.bin",
        "digest": "sha256:" + "AB" * 32, "headers": {"X-A": "1", "Connection": "close"},
        "filters": ["sig"], "identifier": "v2", "timeout_s": 10}


def test_a_hand_off_is_read_whole_and_written_back_the_same():
    request = HandoffRequest.parse(FULL)
    assert request == HandoffRequest(url="http://example.com/a%20b", output="/tmp/out.bin",
                                     digest="sha256:" + "ab" * 32, headers={"X-A": "1"},
                                     filters=["sig"], identifier="v2", timeout_s=10.0)
    assert isinstance(request.timeout_s, float)
    assert request.to_json() == {"url": "http://example.com/a%20b", "output": "/tmp/out.bin",
                                 "digest": "sha256:" + "ab" * 32, "headers": {"X-A": "1"},
                                 "filters": ["sig"], "identifier": "v2", "timeout_s": 10.0}
    assert HandoffRequest.parse(request.to_json()) == request


def test_a_bare_hand_off_has_the_defaults():
    request = HandoffRequest.parse({"url": "http://h/f", "output": "/o"})
    assert request == HandoffRequest("http://h/f", "/o")
    assert (request.digest, request.headers, request.filters, request.identifier,
            request.timeout_s) == (None, {}, [], None, None)


@pytest.mark.parametrize("change", [
    {"url": None}, {"output": None}, {"output": "relative/out"}, {"output": "/a\0b"},
    {"output": "/" + "a" * 4096}, {"url": "http://h/" + "a" * 8192}, {"digest": "md5:00"},
    {"digest": "sha256:zz"}, {"headers": ["X-A: 1"]}, {"filters": "sig"}, {"identifier": 5},
    {"timeout_s": 0}, {"timeout_s": -1}, {"timeout_s": True}, {"timeout_s": "10"},
    {"timeout_s": 1e9}, {"timeout_s": float("nan")},
])
def test_a_hand_off_that_is_not_well_formed_is_a_bad_request(change):
    body = dict(FULL, **change)
    with pytest.raises(BadRequest):
        HandoffRequest.parse({k: v for k, v in body.items() if v is not None})


def test_the_longest_output_path_and_timeout_allowed_are_taken():
    request = HandoffRequest.parse(dict(FULL, output="/" + "a" * 4095, timeout_s=1e9 - 1))
    assert len(request.output) == 4096 and request.timeout_s == 1e9 - 1
    assert HandoffRequest.parse(dict(FULL, timeout_s=0.001)).timeout_s == 0.001


def test_a_long_url_within_the_wire_limit_is_taken():
    url = "http://h/" + "a" * 4000
    assert HandoffRequest.parse(dict(FULL, url=url)).url == url


@pytest.mark.parametrize("change, says", [
    ({"output": "out.bin"}, "output must be an absolute path"),
    ({"digest": "md5:00"}, "md5"),
    ({"filters": "sig"}, "field 'filters' must be a list of strings"),
    ({"timeout_s": 0}, "timeout_s must be a positive number of seconds"),
])
def test_a_bad_hand_off_says_which_field_is_wrong(change, says):
    with pytest.raises(BadRequest) as refused:
        HandoffRequest.parse(dict(FULL, **change))
    assert says in str(refused.value)
