"""Which sources the supernode may fetch (its SSRF defence). Pure: values in, a verdict out.

Anyone who can reach a supernode can make it fetch a URL, so the supernode
decides twice: once on the URL (scheme and host name, at registration and at
every redirect) and once on the address it actually connected to, after DNS,
before a byte is sent, so a name that resolves to a denied address (or is
rebound to one between the two looks) cannot slip through.

A rule is a scheme (`https:`), an address or CIDR (`10.0.0.0/8`, `::1`) or a
host name pattern (`origin.example.com`, `*.example.com`: any subdomain).
Verdict, first match wins:
1. a scheme dfly does not fetch (http, https, ftp, ftps, file, s3 are) is
   denied; file:// is denied unless the operator listed roots it may be read
   from (sources/file.py then keeps it under them); an s3:// URL's host is a
   bucket, so its endpoint's URL is judged when the object is opened;
2. a deny rule matching the scheme, the host name or the address denies;
3. with allow rules of a kind, the source must match one: schemes among the
   scheme rules, and (when there are name or address rules) its name matches a
   name rule or its address an address rule;
4. link-local addresses (cloud metadata services live there) are denied
   unless an address allow rule covers them; everything else is allowed.
Loopback and private ranges are allowed by default only because on-prem
origins live there (README, "Source policy").
"""
import ipaddress
import re
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

FETCHED_SCHEMES = ("http", "https", "ftp", "ftps", "file", "s3")
LINK_LOCAL = tuple(ipaddress.ip_network(n) for n in
                   ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128"))
_NAME = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$")

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


@dataclass(frozen=True)
class Rules:
    schemes: Tuple[str, ...] = ()
    names: Tuple[str, ...] = ()
    networks: Tuple[Network, ...] = ()

    @classmethod
    def parse(cls, texts: Sequence[str]) -> "Rules":
        schemes, names, networks = [], [], []
        for text in texts:
            for rule in (r.strip() for r in text.split(",")):
                if rule:
                    kind, value = parse_rule(rule)
                    {"scheme": schemes, "name": names, "network": networks}[kind].append(value)
        return cls(tuple(schemes), tuple(names), tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.schemes or self.names or self.networks)


def parse_rule(rule: str):
    """("scheme", "https") / ("network", IPv4Network) / ("name", "*.example.com");
    ValueError for anything else."""
    text = rule.strip().lower()
    if re.match(r"^[a-z][a-z0-9+.-]*:(//)?$", text):
        return "scheme", text.split(":", 1)[0]
    if "%" in text or text.startswith("[") != text.endswith("]"):
        # a zone id means another link on every host (and Python 3.9+ would keep it in
        # the network, 3.8 not); a lone bracket is a typo, not an address
        raise ValueError("not a source rule: %r (an IPv6 address or CIDR is written without "
                         "a zone id, in brackets or not: fe80::/10, [2001:db8::5])" % rule)
    try:
        return "network", ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        pass
    if _NAME.match(text) and len(text) <= 253:
        return "name", text.rstrip(".")
    raise ValueError("not a source rule: %r (a scheme like https:, an address or CIDR like "
                     "10.0.0.0/8, or a host name like *.example.com)" % rule)


@dataclass(frozen=True)
class SourcePolicy:
    allow: Rules = Rules()
    deny: Rules = Rules()
    files: bool = False   # file:// may be read (roots are configured)

    @classmethod
    def parse(cls, allow: Sequence[str] = (), deny: Sequence[str] = (),
              files: bool = False) -> "SourcePolicy":
        return cls(Rules.parse(allow), Rules.parse(deny), files)

    def check_url(self, url: str) -> Optional[str]:
        """Why `url` may not be fetched, judged before connecting (None: no objection
        yet; the address is judged by `check_address` once connected)."""
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
        except ValueError:
            return "the URL cannot be parsed"
        scheme = parts.scheme.lower()
        if scheme not in FETCHED_SCHEMES:
            return "scheme %r is not fetched (only %s)" % (scheme, ", ".join(FETCHED_SCHEMES))
        if scheme in self.deny.schemes:
            return "scheme %s is denied" % scheme
        if self.allow.schemes and scheme not in self.allow.schemes:
            return "scheme %s is not allowed" % scheme
        if scheme == "file":
            return None if self.files else "file:// is refused (no --source-file-root is configured)"
        if scheme == "s3":
            return None   # the host is a bucket: the endpoint is judged when opened
        if not host:
            return "the URL names no host"
        if any(_name_matches(p, host) for p in self.deny.names):
            return "host %s is denied" % host
        literal = _address(host)
        if literal is not None:
            return self.check_address(host, literal)
        if self.allow.names and not self.allow.networks \
                and not any(_name_matches(p, host) for p in self.allow.names):
            return "host %s is not allowed" % host
        return None

    def check_address(self, host: str, address) -> Optional[str]:
        """Why the connection to `address` (for URL host `host`) must not be used; None if fine."""
        addr = _address(str(address)) if not isinstance(address, (ipaddress.IPv4Address,
                                                                  ipaddress.IPv6Address)) else address
        if addr is None:
            return "address %r is not an IP address" % (address,)
        addr = _unmapped(addr)
        if any(addr in n for n in self.deny.networks if n.version == addr.version):
            return "address %s is denied" % addr
        allowed_by_rule = any(addr in n for n in self.allow.networks if n.version == addr.version)
        if self.allow.names or self.allow.networks:
            named = any(_name_matches(p, host.lower()) for p in self.allow.names)
            if not (named or allowed_by_rule):
                return "host %s (address %s) is not allowed" % (host, addr)
        if not allowed_by_rule and any(addr in n for n in LINK_LOCAL if n.version == addr.version):
            return "address %s is link-local (denied unless allowed by an address rule)" % addr
        return None


def _name_matches(pattern: str, host: str) -> bool:
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def _address(text: str) -> Optional[Address]:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


NAT64 = ipaddress.ip_network("64:ff9b::/96")   # RFC 6052's well-known prefix


def _unmapped(addr: Address) -> Address:
    """::ffff:169.254.169.254 is 169.254.169.254 to the kernel: judge it as that. So is
    64:ff9b::169.254.169.254 behind a NAT64 gateway (IPv6-only clusters reach IPv4 so)."""
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.version == 6 and addr in NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr
