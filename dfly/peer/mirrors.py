"""Several registries mirrored by one daemon, each its own RegistryMirror.

containerd sends a registry's pulls to the hosts its `certs.d/HOST/hosts.toml`
lists, and adds `?ns=HOST` (the registry as image names spell it: docker.io,
registry.example:5000) to every request it sends a mirror. So one daemon
listed in several hosts.toml files learns from `ns` whose pull each request
is. Each registry has its own mirror: its own upstream URL, its own bearer
token cache (tokens cached per registry, credentials and scope), its own
outage memory; a request goes to the registry its `ns` names and to no other,
so a client's credentials for one registry are never sent to another, and a
request naming a registry this daemon does not mirror is refused (404).
Blobs are still one task per digest whichever registry they came from, and
each is served only after its own registry let this client read it.

With only `--registry-mirror` (no `--mirror-registry`), `ns` is ignored as it
always was: every /v2 request goes to that one registry. A request without
`ns` (Docker, skopeo's registries.conf) goes to `--registry-mirror`.
"""
from dataclasses import replace
from typing import Dict, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit

from dfly.protocol.address import check_url

DOCKER_HUB = "docker.io"
DOCKER_HUB_HOSTS = ("registry-1.docker.io", "index.docker.io", "docker.io")


def registry_name(url: str) -> str:
    """The name image references use for the registry at `url` (containerd's `ns`)."""
    netloc = urlsplit(url).netloc.lower()
    return DOCKER_HUB if netloc in DOCKER_HUB_HOSTS else netloc


def parse_mirror_registry(text: str) -> Tuple[str, str]:
    """(name, url) from `NAME=URL` or `URL` (the name then from the URL's host:port);
    ValueError naming the flag otherwise."""
    name, sep, url = text.partition("=")
    if not sep:
        name, url = "", text
    url = url.strip()
    try:
        parts = urlsplit(url)
        good = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        check_url(url)   # no zone id: as every URL setting (protocol/address.py)
    except ValueError:   # a bad IPv6 literal or port
        good = False
    if not good:
        raise ValueError("bad value for --mirror-registry: %r is not [NAME=]http(s)://HOST[:PORT]"
                         % text[:200])
    name = (name.strip() or registry_name(url)).lower()
    if not name or any(c in name for c in "/?#@ \t"):
        raise ValueError("bad value for --mirror-registry: %r: NAME is a registry host as image "
                         "names spell it (registry.example:5000)" % text[:200])
    return name, url


class Mirrors:
    """Which RegistryMirror serves a /v2 request."""

    def __init__(self, default, default_url: str, named: Dict[str, object]):
        self.default = default   # --registry-mirror's, or None
        self.named = dict(named)
        if default is not None and named:
            self.named.setdefault(registry_name(default_url), default)

    @property
    def any(self) -> bool:
        return self.default is not None or bool(self.named)

    def pick(self, request) -> Tuple[Optional[object], object, str]:
        """(mirror or None, the request without `ns`, the name asked for)."""
        values = request.query.get("ns") or []
        if not self.named or not values:
            return self.default, _without_ns(request) if values else request, ""
        name = values[-1].strip().lower()
        return self.named.get(name), _without_ns(request), name


def _without_ns(request):
    """The request as the registry should see it: `ns` is for the mirror only."""
    path, sep, query = request.target.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "ns"]
    target = path + ("?" + urlencode(kept) if kept else "")
    query_map = {k: v for k, v in request.query.items() if k != "ns"}
    return replace(request, target=target, query=query_map)
