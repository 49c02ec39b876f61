"""Which proxied URLs go through P2P: ordered regex rules, first match wins. Pure.

A rule is written `ACTION REGEX`, the way Dragonfly's dfdaemon rules read
({regex, use_https, direct}):

    p2p /blobs/sha256:            matching GETs are downloaded through P2P
    p2p+https ^http://reg\\.local/  ...fetching the source over https instead of http
    direct \\.json$                matching requests pass straight through

The regex is searched anywhere in the full URL. A URL no rule matches passes
straight through, and so does every method but GET. A P2P GET with a Range is
answered from the whole file once it is here.
"""
import re
from typing import Iterable, List, NamedTuple, Optional, Tuple

from dfly.protocol.address import parse_address

ACTIONS = ("p2p", "p2p+https", "direct")
DEFAULT_RULES = ("p2p /blobs/sha256:[0-9a-f]{64}",)


class Rule(NamedTuple):
    action: str
    pattern: "re.Pattern"

    def __str__(self) -> str:
        return "%s %s" % (self.action, self.pattern.pattern)


class Decision(NamedTuple):
    p2p: bool
    url: str                 # the URL to fetch: rewritten to https by a p2p+https rule
    rule: Optional[Rule]     # the rule that decided, None when none matched


def parse_rules(texts: Iterable[str]) -> List[Rule]:
    """Rules from their `ACTION REGEX` forms; ValueError naming the bad one."""
    rules = []
    for text in texts:
        action, _, pattern = text.strip().partition(" ")
        pattern = pattern.strip()
        if action not in ACTIONS or not pattern:
            raise ValueError("proxy rule must be 'ACTION REGEX' with ACTION one of %s, got %r"
                             % ("/".join(ACTIONS), text))
        try:
            rules.append(Rule(action, re.compile(pattern)))
        except re.error as e:
            raise ValueError("proxy rule %r: bad regex: %s" % (text, e))
    return rules


def decide(rules: List[Rule], method: str, url: str) -> Decision:
    """Whether `method url` goes P2P, and from which URL."""
    if method != "GET":
        return Decision(False, url, None)
    for rule in rules:
        if rule.pattern.search(url):
            if rule.action == "direct":
                return Decision(False, url, rule)
            if rule.action == "p2p+https" and url.startswith("http://"):
                return Decision(True, "https://" + url[len("http://"):], rule)
            return Decision(True, url, rule)
    return Decision(False, url, None)


def split_target(url: str) -> Tuple[str, str, int, str]:
    """(scheme, host, port, path+query) of an absolute http URL; ValueError otherwise."""
    m = re.match(r"^(https?)://([^/?#@\s]+)([/?][^#\s]*)?$", url, re.I)
    if not m:
        raise ValueError("not an absolute http URL: %r" % url[:200])
    scheme, authority, rest = m.group(1).lower(), m.group(2), m.group(3) or "/"
    if not rest.startswith("/"):
        rest = "/" + rest
    host, port = _host_port(authority, 443 if scheme == "https" else 80)
    return scheme, host, port, rest


def split_authority(authority: str) -> Tuple[str, int]:
    """(host, port) of a CONNECT target `host:port`; ValueError otherwise."""
    if "/" in authority or "@" in authority or not authority:
        raise ValueError("CONNECT target must be host:port, got %r" % authority[:200])
    host, port = _host_port(authority, -1)
    if port < 0:
        raise ValueError("CONNECT target must name a port, got %r" % authority[:200])
    return host, port


def _host_port(authority: str, default_port: int) -> Tuple[str, int]:
    host, port = parse_address(authority[:300], default_port)
    if not host:
        raise ValueError("no host in %r" % authority[:200])
    if port == 0:
        raise ValueError("bad port in %r" % authority[:200])
    return host, port
