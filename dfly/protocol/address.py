"""Network addresses as dfly reads and writes them: one parser, one formatter. Pure.

Every flag, config key and wire field that names a host goes through here, so
each says the same about bad input. The written form is the one URLs use:
`HOST:PORT` for names and IPv4, `[ADDR]:PORT` for IPv6 (RFC 3986); a bare IPv6
address is ambiguous before a port (`::1:8002`), so brackets are required
there. Zone ids (`fe80::1%eth0`) are refused: a link-local address means
something else on every host, so it cannot be handed to another peer.
"""
import ipaddress
import re
from typing import Optional, Tuple
from urllib.parse import urlsplit

# A host name: no separators, brackets, zone marks, spaces or control characters.
_NAME = re.compile(r"^[^\s/?#@\[\]%:\\,\x00-\x1f\x7f]{1,253}$")
WILDCARDS_V4 = ("", "0.0.0.0")


def parse_address(text: str, default_port: Optional[int] = None) -> Tuple[str, int]:
    """(host, port) from `HOST:PORT`, `HOST`, `:PORT` or `[IPV6]:PORT`; the host unbracketed
    ("" when left out: every address). ValueError saying what is wrong otherwise."""
    if not isinstance(text, str):
        raise ValueError("an address must be text, got %r" % (text,))
    text = text.strip()
    if not text:
        raise ValueError("empty address")
    if text.startswith("["):
        inside, closed, rest = text[1:].partition("]")
        if not closed:
            raise ValueError("%r: missing ']' after the IPv6 address" % text)
        host = _ipv6(inside, text)
        if rest and not rest.startswith(":"):
            raise ValueError("%r: expected ':PORT' after ']'" % text)
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        if "%" in text:
            raise ValueError("%r: zone ids (%s) are not supported; use an address other hosts "
                             "can reach" % (text, text[text.index("%"):]))
        raise ValueError("%r: an IPv6 address needs brackets, as in %s" % (text, _bracketed(text)))
    else:
        host, colon, port_text = text.partition(":")
        host = _name(host, text) if host else ""
        port_text = port_text if colon else None
    return host, _port(port_text, default_port, text)


def parse_host(text: str) -> str:
    """A host without a port (what `--advertise` of a peer takes): a name, IPv4, or IPv6
    with or without brackets; returned unbracketed. ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError("a host must be text, got %r" % (text,))
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        return _ipv6(text[1:-1], text)
    if ":" in text:
        if _is_ipv6(text) or "%" in text:
            return _ipv6(text, text)
        raise ValueError("%r: a host without a port is wanted here" % text)
    if not text:
        raise ValueError("empty host")
    return _name(text, text)


def format_host(host: str) -> str:
    """`host` as it goes into a URL or a Host header: IPv6 in brackets."""
    return "[%s]" % host if ":" in host else host


def format_address(host: str, port: int) -> str:
    """`HOST:PORT`, or `[IPV6]:PORT`."""
    return "%s:%d" % (format_host(host), port)


def canonical_address(text: str) -> str:
    """`text` checked and written the one way (IPv6 compressed, lower case); a port is
    added only if it was given. ValueError as parse_address."""
    host, port = parse_address(text, default_port=-1)
    shown = format_host(host)
    return shown if port < 0 else "%s:%d" % (shown, port)


def plain_ip(host: str) -> str:
    """An IPv4 client of a dual-stack listener shows as `::ffff:a.b.c.d`: give `a.b.c.d`,
    the address the client itself knows and other IPv4 hosts can reach."""
    if host.startswith("::ffff:") and "." in host:
        try:
            mapped = ipaddress.IPv6Address(host).ipv4_mapped
        except ValueError:
            return host
        if mapped is not None:
            return str(mapped)
    return host


# By default each IPv6 address is a client of its own, as each IPv4 one is: the hosts
# of a cluster often share one /64 (a cloud subnet, one LAN segment, a testbed
# bridge), and grouping them would give the whole cluster one client's share. Where
# clients are hosts that each own a /64 (RFC 6177; SLAAC picks addresses inside it
# and a host may take a new one at will, RFC 8981), --client-ipv6-prefix 64 stops
# one host getting a share per address it rotates through.
CLIENT_IPV6_PREFIX = 128


def client_key(host: str, ipv6_prefix: int = CLIENT_IPV6_PREFIX) -> str:
    """Who a per-client limit counts `host` (a client's IP) as: an IPv4 address by
    itself, an IPv4-mapped IPv6 one as its IPv4 address, any other IPv6 one by its
    `ipv6_prefix` (`2001:db8:1:2::/64`; 128: by itself). A link-local address counts
    by itself (fe80::/64 is every neighbour's on the link), as ::1 does. Not an IP:
    `host` itself."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if ipv6_prefix >= 128 or address.is_link_local or address.is_loopback:
        return str(address)
    return str(ipaddress.IPv6Network((address, max(0, ipv6_prefix)), strict=False))


def address_family(host: str) -> Optional[int]:
    """4 or 6 for an IP address (unbracketed), None for a host name (either, as it resolves)."""
    if ":" in host:
        return 6
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return None
    return 4


def is_ipv6(host: str) -> bool:
    """Is `host` (unbracketed) an IPv6 address?"""
    return _is_ipv6(host)


def loopback_for(host: str) -> str:
    """A host to connect to for a listener bound to `host`: its own loopback for a
    wildcard (every address), else `host`."""
    if host in WILDCARDS_V4:
        return "127.0.0.1"
    return "::1" if host == "::" else host


def upload_address(listen: str, advertised_host: str) -> Tuple[str, int]:
    """Where an uploader told to listen on `listen` binds, given the host it advertises:
    the listen family follows the advertised one, so a wildcard (every address) is `::`
    (every IPv6 and IPv4 address) for a peer that advertises IPv6, 0.0.0.0 otherwise."""
    host, port = parse_address(listen, 0)
    if host in WILDCARDS_V4:
        host = "::" if _is_ipv6(advertised_host or "") else "0.0.0.0"
    return host, port


def check_url(url: str) -> None:
    """ValueError when the host of `url` is malformed or a scoped (zone id) address,
    which means nothing to another host; other URL checks are the caller's."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError as e:   # urlsplit itself refuses some broken brackets
        raise ValueError("bad URL %r: %s" % (url[:200], e))
    authority = netloc.rpartition("@")[2]
    if not authority:
        return
    try:
        parse_address(authority, default_port=0)
    except ValueError as e:
        raise ValueError("bad host in URL %r: %s" % (url[:200], e))


def _bracketed(text: str) -> str:
    """How `text`, an IPv6 address with or without a port, is written with brackets."""
    head, _, port = text.rpartition(":")
    if _is_ipv6(head) and port.isdigit() and int(port) <= 65535:
        return "[%s]:%s" % (head, port)
    return "[%s]:PORT" % text if _is_ipv6(text) else "[ADDR]:PORT"


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return "%" not in text


def _ipv6(inside: str, text: str) -> str:
    if "%" in inside:
        raise ValueError("%r: zone ids (%s) are not supported; use an address "
                         "other hosts can reach" % (text, inside[inside.index("%"):]))
    try:
        return ipaddress.IPv6Address(inside).compressed
    except ValueError:
        raise ValueError("%r: %r is not an IPv6 address" % (text, inside))


def _name(host: str, text: str) -> str:
    if "%" in host:
        raise ValueError("%r: zone ids are not supported; use an address other hosts can reach"
                         % text)
    if not _NAME.match(host):
        raise ValueError("%r: %r is not a host name or address" % (text, host))
    try:   # what the resolver does first: an empty or over-long label fails there, as a 500
        host.encode("idna")
    except UnicodeError:
        raise ValueError("%r: %r is not a host name or address" % (text, host))
    return host


def _port(port_text: Optional[str], default_port: Optional[int], text: str) -> int:
    if port_text is None:
        if default_port is None:
            raise ValueError("%r: no port (write HOST:PORT)" % text)
        return default_port
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise ValueError("%r: bad port %r" % (text, port_text))
    port = int(port_text)
    if port > 65535:
        raise ValueError("%r: port out of range (0-65535)" % text)
    return port
