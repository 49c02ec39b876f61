"""Supernode tiers, the pure rules: the chain of supernodes a request passed
(`X-Dfly-Via`), when that chain is a loop or too long, and the start-up check
that a supernode is not its own upstream.

A supernode that fetches a task from its upstream cluster registers there as
a peer, and adds its own id to the chain it was asked with. The chain travels
in the registration's `headers` (the headers a supernode sends to the source)
under VIA, a comma-separated list of supernode ids, oldest first; every
supernode takes it out before anything else sees those headers, so it never
reaches an origin. A supernode that finds its own id in the chain refuses the
registration (a loop: the task would wait on itself), as does one that
passed more than `max_hops` supernodes.
"""
import ipaddress
import re
from typing import Dict, Iterable, Sequence, Tuple

from dfly.errors import DflyError
from dfly.protocol.address import parse_address

VIA = "X-Dfly-Via"
DEFAULT_MAX_HOPS = 4
NODE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_VIA = 32   # ids a chain may carry at all, whatever --upstream-max-hops says


class UpstreamLoop(DflyError):
    """A registration came back to a supernode it already passed, or through too many."""
    http_status = 508


def take_via(headers: Dict[str, str]) -> Tuple[str, ...]:
    """Remove the chain from `headers` (any case of the name) and return it;
    BadRequest-like UpstreamLoop for a chain that is not one."""
    chain: Tuple[str, ...] = ()
    for name in [k for k in headers if k.lower() == VIA.lower()]:
        chain += parse_via(headers.pop(name))
    return chain


def parse_via(value: str) -> Tuple[str, ...]:
    ids = tuple(part.strip() for part in value.split(",") if part.strip())
    if len(ids) > MAX_VIA or not all(NODE_ID.match(i) for i in ids):
        raise UpstreamLoop("bad %s header: at most %d supernode ids of [A-Za-z0-9._-]"
                           % (VIA, MAX_VIA))
    return ids


def format_via(chain: Sequence[str]) -> str:
    return ",".join(chain)


def check_via(chain: Sequence[str], me: str, max_hops: int) -> None:
    """UpstreamLoop when `chain` already passed `me`, or is longer than `max_hops`."""
    if me in chain:
        raise UpstreamLoop("upstream loop: this registration already passed this supernode "
                           "(%s: %s); check --upstream-supernode on each tier"
                           % (VIA, format_via(chain)))
    if len(chain) > max_hops:
        raise UpstreamLoop("too many supernode tiers: the registration passed %d supernodes "
                           "(%s), more than --upstream-max-hops %d"
                           % (len(chain), format_via(chain), max_hops))


def check_upstreams(upstreams: Iterable[str], own: Iterable[str]) -> None:
    """ValueError (exit 2 at start-up) for an upstream that is this supernode or a
    member of its own cluster: an obvious loop. Addresses are compared parsed; a
    loopback address is this host, so it matches a wildcard listen on its port."""
    mine = [parse_address(a, 8002) for a in own if a]
    for address in upstreams:
        host, port = parse_address(address, 8002)
        if any(port == p and _same_host(host.lower(), h.lower()) for h, p in mine):
            raise ValueError("--upstream-supernode %s is this supernode or a member of its own "
                             "cluster: a supernode cannot be its own upstream" % address)


WILDCARDS = ("", "0.0.0.0", "::")
THIS_HOST = ("localhost", "127.0.0.1", "::1")


def _same_host(upstream: str, listen: str) -> bool:
    if upstream == listen or (upstream in THIS_HOST and listen in THIS_HOST):
        return True
    return listen in WILDCARDS and _loopback(upstream)


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
