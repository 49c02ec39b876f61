"""The pure rules of the daemon hand-off: which requests count as `dfly get`'s."""
import pytest

from dfly.errors import BadRequest, Forbidden
from dfly.protocol.handoff import check_handoff, loopback_host, proof, proof_valid

TOKEN = "ab" * 32
GOOD = {"Host": "127.0.0.1:65001", "Content-Type": "application/json; charset=utf-8",
        "Authorization": "Bearer " + TOKEN}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:65001", "127.9.9.9:1", "localhost",
                                  "LOCALHOST:65001", "[::1]:65001", "::1"])
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
