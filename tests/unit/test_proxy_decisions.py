"""The proxy's decisions in full (P2P or not, from which URL, by which rule) and
its target parsing at the edges: what a mutation run showed untested."""
import pytest

from dfly.protocol.proxyrules import Decision, decide, parse_rules, split_authority, split_target

URL = "http://cdn.example/big.iso"


def test_every_decision_names_the_url_to_fetch_and_the_rule_that_made_it():
    direct, p2p = parse_rules(["direct \\.json$", "p2p \\.iso$"])
    assert decide([direct, p2p], "HEAD", URL) == Decision(False, URL, None)
    assert decide([direct, p2p], "GET", URL + ".json") == Decision(False, URL + ".json", direct)
    assert decide([direct, p2p], "GET", URL) == Decision(True, URL, p2p)
    other = "http://cdn.example/x.bin"
    assert decide([direct, p2p], "GET", other) == Decision(False, other, None)


def test_only_a_p2p_https_rule_rewrites_the_source_to_https():
    [p2p] = parse_rules(["p2p \\.iso$"])
    assert decide([p2p], "GET", URL).url == URL
    [https] = parse_rules(["p2p+https \\.iso$"])
    assert decide([https], "GET", URL) == Decision(True, "https://cdn.example/big.iso", https)
    assert decide([https], "GET", "https://cdn.example/big.iso").url == "https://cdn.example/big.iso"


def test_absolute_targets_at_the_edges():
    assert split_target("HTTP://h/x") == ("http", "h", 80, "/x")          # the scheme in any case
    assert split_target("http://h?q=1") == ("http", "h", 80, "/?q=1")     # a query with no path
    assert split_target("http://h:1/") == ("http", "h", 1, "/")
    assert split_target("http://h:65535/") == ("http", "h", 65535, "/")
    with pytest.raises(ValueError):
        split_target("http://h:65536/")


def test_a_connect_target_with_credentials_is_refused():
    with pytest.raises(ValueError):
        split_authority("user@example.com:443")
    assert split_authority("example.com:1") == ("example.com", 1)


def test_a_rule_regex_may_hold_spaces():
    [rule] = parse_rules(["direct  a b  "])
    assert (rule.action, rule.pattern.pattern, str(rule)) == ("direct", "a b", "direct a b")


@pytest.mark.parametrize("call, arg, says", [
    (parse_rules, ["fetch /x"], "proxy rule must be 'ACTION REGEX' with ACTION one of p2p/p2p+https/direct"),
    (parse_rules, ["p2p ("], "proxy rule 'p2p (': bad regex"),
    (split_target, "ftp://h/x", "not an absolute http URL: 'ftp://h/x'"),
    (split_target, "http://:80/x", "no host in ':80'"),
    (split_target, "http://h:0/x", "bad port in 'h:0'"),
    (split_authority, "h/x:443", "CONNECT target must be host:port, got 'h/x:443'"),
    (split_authority, "h", "CONNECT target must name a port, got 'h'"),
])
def test_each_refusal_says_what_is_wrong(call, arg, says):
    """The proxy answers these words in its 400s."""
    with pytest.raises(ValueError) as refused:
        call(arg)
    assert says in str(refused.value)
