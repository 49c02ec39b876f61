"""The registry token protocol as values: challenges read, token requests
built, token answers checked."""
from dfly.protocol.bearer import (
    DEFAULT_EXPIRES_IN_S,
    Challenge,
    parse_challenge,
    parse_token_reply,
    token_target,
)


def test_a_bearer_challenge_gives_its_realm_service_and_scope():
    header = ('Bearer realm="https://auth.example/token",service="registry.example",'
              'scope="repository:team/app:pull"')
    assert parse_challenge(header) == Challenge("https://auth.example/token", "registry.example",
                                                "repository:team/app:pull")


def test_the_bearer_challenge_is_found_among_others_and_quoted_escapes_are_read():
    header = 'Basic realm="basic", Bearer realm="http://127.0.0.1:9/t",scope="a\\"b", Other x=1'
    assert parse_challenge(header) == Challenge("http://127.0.0.1:9/t", "", 'a"b')


def test_no_bearer_challenge_or_a_realm_that_is_no_http_url_is_none():
    for header in ("", "Basic realm=\"x\"", 'Bearer service="s"', 'Bearer realm="file:///etc/passwd"',
                   'Bearer realm="/relative/token"'):
        assert parse_challenge(header) is None, header


def test_the_token_request_keeps_the_realms_query_and_adds_service_and_scope():
    assert token_target(Challenge("https://a/token", "reg", "repository:x/y:pull")) == \
        "/token?service=reg&scope=repository%3Ax%2Fy%3Apull"
    assert token_target(Challenge("https://a/t?tenant=1", "", "")) == "/t?tenant=1"
    assert token_target(Challenge("https://a", "s", "")) == "/?service=s"


def test_a_token_answer_gives_the_token_and_its_lifetime():
    assert parse_token_reply(b'{"token": "abc", "expires_in": 300}') == ("abc", 300.0)
    assert parse_token_reply(b'{"access_token": "xyz"}') == ("xyz", DEFAULT_EXPIRES_IN_S)
    assert parse_token_reply(b'{"token": "abc", "expires_in": true}') == ("abc", DEFAULT_EXPIRES_IN_S)


def test_a_lifetime_that_is_not_a_finite_number_is_the_default():
    """json.loads takes NaN and Infinity: a token kept forever, or compared with NaN."""
    for lifetime in (b"NaN", b"Infinity", b"-Infinity"):
        reply = parse_token_reply(b'{"token": "abc", "expires_in": %s}' % lifetime)
        assert reply == ("abc", DEFAULT_EXPIRES_IN_S), lifetime


def test_answers_without_a_usable_token_are_none():
    for body in (b"", b"[]", b"not json", b'{"token": 5}', b'{"token": ""}',
                 b'{"token": "a\\r\\nX-Injected: 1"}', b'{"token": "' + b"a" * 70000 + b'"}'):
        assert parse_token_reply(body) is None, body[:40]
