"""Proxy rules: ordered, first match wins, only GETs go P2P, https rewrite."""
import pytest

from dfly.protocol.proxyrules import DEFAULT_RULES, decide, parse_rules, split_authority, split_target

BLOB = "http://reg.local:5000/v2/app/blobs/sha256:" + "0" * 64


def test_the_default_rule_sends_blob_gets_through_p2p_and_nothing_else():
    rules = parse_rules(DEFAULT_RULES)
    assert decide(rules, "GET", BLOB).p2p
    assert not decide(rules, "GET", "http://reg.local:5000/v2/app/manifests/v1").p2p
    assert not decide(rules, "HEAD", BLOB).p2p
    assert not decide(rules, "POST", BLOB).p2p


def test_the_first_matching_rule_decides():
    rules = parse_rules(["direct \\.json$", "p2p ^http://cdn\\.example/", "p2p \\.iso$"])
    assert not decide(rules, "GET", "http://cdn.example/meta.json").p2p
    assert decide(rules, "GET", "http://cdn.example/big.bin").rule.pattern.pattern == "^http://cdn\\.example/"
    assert decide(rules, "GET", "http://other/x.iso").p2p
    unmatched = decide(rules, "GET", "http://other/x.bin")
    assert not unmatched.p2p and unmatched.rule is None


def test_a_p2p_https_rule_fetches_the_source_over_https():
    rules = parse_rules(["p2p+https ^http://reg\\.local/"])
    decision = decide(rules, "GET", "http://reg.local/v2/x")
    assert decision.p2p and decision.url == "https://reg.local/v2/x"


@pytest.mark.parametrize("text", ["p2p", "fetch .*", "p2p (", "", "direct   "])
def test_bad_rules_are_refused_with_the_rule_named(text):
    with pytest.raises(ValueError) as caught:
        parse_rules([text])
    assert repr(text) in str(caught.value)


def test_absolute_targets_and_connect_authorities_split():
    assert split_target("http://h:8080/a?b=1") == ("http", "h", 8080, "/a?b=1")
    assert split_target("https://h") == ("https", "h", 443, "/")
    assert split_target("http://[::1]:81/x") == ("http", "::1", 81, "/x")
    assert split_authority("example.com:443") == ("example.com", 443)
    for bad in ("ftp://h/x", "/relative", "http://user@h/x", "http://h:99999/"):
        with pytest.raises(ValueError):
            split_target(bad)
    for bad in ("example.com", "h:0", "h:x", "h:443/path"):
        with pytest.raises(ValueError):
            split_authority(bad)
