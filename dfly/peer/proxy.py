"""The HTTP proxy: ordered regex rules pick the GETs that go through P2P; all
else passes through as the server answers (status, headers, streamed body),
and CONNECT is tunnelled byte for byte (so https passes through unseen).

A P2P GET first asks the origin (HEAD, with the client's own headers) whether
this client may read the URL and what its content headers are; a refusal is
answered by passing the GET through, so the client sees the origin's own error.
Then the file is downloaded into the daemon's cache (verified piece by piece,
kept and seeded to other peers) and streamed to the client while its pieces
arrive, with the origin's Content-Type, -Disposition, -Encoding and -Language,
Range honoured. The copy is reused for `fresh_for_s`; after that the next
request asks the supernode again, which revalidates with the origin.

The HEAD is asked once per task, not once per client (descriptions.py): clients
that send the same headers share one answer, kept with its validators for
`fresh_for_s`. Headers that cannot say who asks (User-Agent, Accept, ...) are
left out of that comparison; any other (an API key in a header of its own, as
GitLab's PRIVATE-TOKEN) keeps the answer to clients that send the same value.
A request with Authorization or Cookie gets a HEAD of its own, since the origin
may answer each client differently and a session may end at any time.
"""
import hashlib
import ipaddress
import logging
import socket
import time
from typing import List, Optional

from dfly import errors
from dfly.httpd import Response
from dfly.peer.cache import Cache
from dfly.peer.descriptions import Description, Descriptions
from dfly.peer.front import BodyReader, FrontRequest, Streamed, Tunnel, allowed_pairs, header_pairs
from dfly.peer.registry import Fetch, serve_entry
from dfly.peer.upstream import Upstream, UpstreamDown
from dfly.protocol.proxyrules import Rule, decide, split_authority, split_target
from dfly.protocol.task import task_id

log = logging.getLogger("dfly.daemon")

# Not passed to the source of a P2P download: they would change which bytes it
# sends (ranges, validators, compression) rather than who asks.
P2P_DROP = ("range", "if-range", "if-none-match", "if-modified-since", "if-match",
            "if-unmodified-since", "accept-encoding", "host", "proxy-authorization",
            "proxy-connection", "connection", "keep-alive", "te", "upgrade")


# Kept from the origin's HEAD on a P2P answer. Not its validators (ETag, Last-Modified):
# the cached copy may be older than the HEAD, and a client must not store it under them.
CONTENT_HEADERS = ("content-type", "content-disposition", "content-encoding", "content-language")
HEAD_UNSUPPORTED = (405, 501)
VALIDATORS = ("etag", "last-modified")   # kept beside the description, to revalidate it
VIA = ("Via", "1.1 dfly")
# A request carrying these gets its own HEAD: the origin may refuse one client and not another.
CREDENTIALS = ("authorization", "cookie")
# Headers that do not tell one client from another: requests that differ only in these
# share the origin's answer. Every other header may be a key of the origin's own.
ANONYMOUS = ("user-agent", "accept", "accept-language", "accept-charset", "via", "pragma",
             "cache-control", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
             "x-real-ip", "forwarded", "dnt", "referer", "origin")


def _shared_by(url: str, headers) -> str:
    """Which clients may share the origin's answer about `url`: those that send the same
    values of every header that may identify them (hashed: the key is kept in memory)."""
    identity = sorted((k.lower(), v) for k, v in headers.items() if k.lower() not in ANONYMOUS)
    if not identity:
        return url
    return url + " " + hashlib.sha256(repr(identity).encode("utf-8", "replace")).hexdigest()


class _Refused(Exception):
    """The origin answered the HEAD with an error: the client gets the origin's own GET answer."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class HttpProxy:
    def __init__(self, rules: List[Rule], upstream: Upstream, cache: Cache, fetch: Fetch,
                 fetch_timeout_s: float, fresh_for_s: float, connect_timeout_s: float):
        self.rules = rules
        self.upstream = upstream
        self.cache = cache
        self.fetch = fetch
        self.fetch_timeout_s = fetch_timeout_s
        self.fresh_for_s = fresh_for_s
        self.connect_timeout_s = connect_timeout_s
        # The daemon's own front port: a request sent there through the proxy would reach
        # the daemon's API from loopback, as if from this host (set once it is bound).
        self.own_port = 0
        self.descriptions = Descriptions(fresh_for_s, time.monotonic, wait_s=2 * connect_timeout_s)

    def handle(self, request: FrontRequest, body: Optional[BodyReader]) -> Response:
        if request.method == "CONNECT":
            return self._connect(request.target)
        try:
            scheme, host, port, target = split_target(request.target)
        except ValueError as e:
            raise errors.BadRequest(str(e))
        self._refuse_loop(host, port)
        decision = decide(self.rules, request.method, request.target)
        try:
            if decision.p2p:
                try:
                    return self._p2p(request, decision.url)
                except _Refused as e:
                    log.info("proxy: the origin refused %s (%d); passing it through",
                             request.target[:200], e.status)
                except (errors.SourceError, errors.P2PUnavailable) as e:
                    # The origin's own answer (a 404, a 500) is what the client should see.
                    log.info("proxy: P2P for %s failed (%s); passing it through", request.target[:200], e)
            # Via (RFC 9110 7.6.3) also tells the daemon's API the request was proxied.
            reply = self.upstream.open(request.method, scheme, host, port, target,
                                       header_pairs(request.headers.items()) + [VIA], body,
                                       body.length if body is not None else None)
        except (errors.DigestMismatch, UpstreamDown) as e:
            log.warning("proxy %s %s: %s", request.method, request.target[:200], e)
            return Response.text("dfly proxy: %s\n" % e, 502)
        return Response(reply.status, Streamed(reply, reply.length), reply.headers)

    def _p2p(self, request: FrontRequest, url: str) -> Response:
        headers = dict(allowed_pairs(request.headers.items(), P2P_DROP))
        described = self._describe(url, headers)
        key = "task-" + task_id(url)
        entry = self.cache.begin(key, lambda into, filling: self.fetch(url, into, headers=headers,
                                                                       filling=filling),
                                 fresh_for_s=self.fresh_for_s)
        return serve_entry(entry, request.headers.get("Range"), described + [("X-Dfly", "p2p")],
                           self.fetch_timeout_s)

    def _describe(self, url: str, headers) -> list:
        """The origin's content headers for `url`: a HEAD with the client's own headers, so
        also its say on whether this client may read it (a refusal raises _Refused)."""
        if any(k.lower() in CREDENTIALS for k in headers):
            return self._ask(url, headers, None).headers
        return self.descriptions.get(_shared_by(url, headers),
                                     lambda previous: self._ask(url, headers, previous)).headers

    def _ask(self, url: str, headers, previous: Optional[Description]) -> Description:
        """One HEAD (conditional on `previous`'s validators if given).
        application/octet-stream when the origin cannot say."""
        scheme, host, port, target = split_target(url)
        conditions = previous.conditions() if previous is not None else []
        try:
            with self.upstream.open("HEAD", scheme, host, port, target,
                                    list(headers.items()) + conditions) as reply:
                status, pairs = reply.status, reply.headers
        except UpstreamDown as e:   # the supernode may still reach it
            log.info("proxy: HEAD %s failed (%s)", url[:200], e)
            return Description([("Content-Type", "application/octet-stream")])
        if status == 304 and previous is not None:
            return previous
        if status >= 400 and status not in HEAD_UNSUPPORTED:
            raise _Refused(status)
        kept = [(k, v) for k, v in pairs if k.lower() in CONTENT_HEADERS] if status < 300 else []
        if not any(k.lower() == "content-type" for k, _ in kept):
            kept.append(("Content-Type", "application/octet-stream"))
        validators = [(k, v) for k, v in pairs if k.lower() in VALIDATORS] if status < 300 else []
        return Description(kept, validators, keep=status < 300 or status in HEAD_UNSUPPORTED)

    def _connect(self, authority: str) -> Response:
        try:
            host, port = split_authority(authority)
        except ValueError as e:
            raise errors.BadRequest(str(e))
        self._refuse_loop(host, port)
        try:
            sock = socket.create_connection((host, port), timeout=self.connect_timeout_s)
        except OSError as e:
            log.warning("CONNECT %s failed: %s", authority[:200], e)
            return Response.text("dfly proxy: cannot reach %s: %s\n" % (authority[:200], e), 502)
        return Response(200, Tunnel(sock))

    def _refuse_loop(self, host: str, port: int) -> None:
        if port == self.own_port and _local_address(host, port):
            raise errors.Forbidden("the proxy does not forward to this daemon's own port")


def _local_address(host: str, port: int) -> bool:
    """Does `host` name this machine (loopback, unspecified, or an address we can bind)?"""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False   # the connection will fail as well
    for family, _, _, _, sockaddr in infos:
        try:
            ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        except ValueError:
            continue
        if ip.is_loopback or ip.is_unspecified:
            return True
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((sockaddr[0], 0))   # succeeds only for this machine's addresses
                return True
            except OSError:
                continue
    return False
