"""The HTTP proxy: ordered regex rules pick the GETs that go through P2P; all
else passes through as the server answers (status, headers, streamed body),
and CONNECT is tunnelled byte for byte (so https passes through unseen).

A P2P GET downloads the whole file into the daemon's cache (verified piece by
piece, kept and seeded to other peers) and answers from there, Range honoured.
The copy is reused for `fresh_for_s`; after that the next request asks the
supernode again, which revalidates with the origin.
"""
import logging
import socket
from typing import List, Optional

from dfly import errors
from dfly.httpd import Response
from dfly.peer.cache import Cache
from dfly.peer.front import BodyReader, FrontRequest, Streamed, Tunnel, allowed_pairs, header_pairs
from dfly.peer.registry import Fetch, serve_file
from dfly.peer.upstream import Upstream, UpstreamDown
from dfly.protocol.proxyrules import Rule, decide, split_authority, split_target
from dfly.protocol.task import task_id

log = logging.getLogger("dfly.daemon")

# Not passed to the source of a P2P download: they would change which bytes it
# sends (ranges, validators, compression) rather than who asks.
P2P_DROP = ("range", "if-range", "if-none-match", "if-modified-since", "if-match",
            "if-unmodified-since", "accept-encoding", "host", "proxy-authorization",
            "proxy-connection", "connection", "keep-alive", "te", "upgrade")


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

    def handle(self, request: FrontRequest, body: Optional[BodyReader]) -> Response:
        if request.method == "CONNECT":
            return self._connect(request.target)
        try:
            scheme, host, port, target = split_target(request.target)
        except ValueError as e:
            raise errors.BadRequest(str(e))
        decision = decide(self.rules, request.method, request.target)
        try:
            if decision.p2p:
                try:
                    return self._p2p(request, decision.url)
                except (errors.SourceError, errors.P2PUnavailable) as e:
                    # The origin's own answer (a 404, a 500) is what the client should see.
                    log.info("proxy: P2P for %s failed (%s); passing it through", request.target[:200], e)
            reply = self.upstream.open(request.method, scheme, host, port, target,
                                       header_pairs(request.headers.items()), body,
                                       body.length if body is not None else None)
        except (errors.DigestMismatch, UpstreamDown) as e:
            log.warning("proxy %s %s: %s", request.method, request.target[:200], e)
            return Response.text("dfly proxy: %s\n" % e, 502)
        return Response(reply.status, Streamed(reply, reply.length), reply.headers)

    def _p2p(self, request: FrontRequest, url: str) -> Response:
        headers = dict(allowed_pairs(request.headers.items(), P2P_DROP))
        key = "task-" + task_id(url)
        path = self.cache.obtain(key, lambda into: self.fetch(url, into, headers=headers),
                                 self.fetch_timeout_s, fresh_for_s=self.fresh_for_s)
        return serve_file(path, request.headers.get("Range"),
                          [("Content-Type", "application/octet-stream"), ("X-Dfly", "p2p")])

    def _connect(self, authority: str) -> Response:
        try:
            host, port = split_authority(authority)
        except ValueError as e:
            raise errors.BadRequest(str(e))
        try:
            sock = socket.create_connection((host, port), timeout=self.connect_timeout_s)
        except OSError as e:
            log.warning("CONNECT %s failed: %s", authority[:200], e)
            return Response.text("dfly proxy: cannot reach %s: %s\n" % (authority[:200], e), 502)
        return Response(200, Tunnel(sock))
