"""The registry mirror: the OCI distribution read path in front of one upstream.

Blob GETs go through P2P: the task is the blob's digest (so one layer from two
repositories or registries is one task), the file is verified against that
digest before it enters the cache, and it is served with sendfile, Range
honoured: from the cache, or while it downloads (filling.py: verified pieces
in order, the last one only after the digest matched, cut short if it does
not). Everything else on /v2 (the version check, manifests by tag or digest,
image indexes, listings, HEADs) is passed through to the upstream as it
answers, status and headers included: so a client sees the upstream's own 401
and token challenge, and picks its platform from the index.

Access: a cached blob is never served on trust. Before serving, the daemon asks
the upstream (HEAD, with the client's own Authorization) whether this client
may read this blob in this repository; anything but yes is passed back as the
upstream said it (outage mode, below, is the one exception). The client's
Authorization also goes with the P2P task, so
the supernode fetches a private blob with credentials that can read it. A
client sending Basic credentials to a registry that answers with a Bearer
challenge gets a token fetched with them (tokens.py), and the task carries it.

Outage mode (outage.py): every yes is remembered (a keyed hash of the
repository, digest and the client's Authorization, for --outage-access-ttl),
and so are manifests and the base's challenge. When the registry cannot be
reached at all (refused, timed out, no route), a client the registry said yes
to for that blob or manifest within the window is served as if it had said
yes again: blobs from the cache, or through the cluster (whose supernode
serves its finished copy while the registry is unreachable). Anyone else gets
the 502 as before. A registry that answers (401, 404, 500) is always believed.
"""
import logging
import os
from typing import Callable, Dict, Optional, Tuple, Union
from urllib.parse import urlsplit

from dfly import errors
from dfly.httpd import FileSlice, Response
from dfly.peer.cache import Cache
from dfly.peer.filling import Filling, FillReader
from dfly.peer.front import FrontRequest, Spans, Streamed, allowed_pairs, header_pairs
from dfly.peer.imported import ImportedImages
from dfly.peer.outage import API_HEADERS, MAX_ONE_MANIFEST, OutageMemory
from dfly.peer.tokens import BearerTokens
from dfly.peer.upstream import Upstream, UpstreamDown, UpstreamResponse
from dfly.protocol import oci
from dfly.protocol.bearer import parse_challenge
from dfly.protocol.ranges import RangeNotSatisfiable, content_range, parse_range

log = logging.getLogger("dfly.daemon")

READ_METHODS = ("GET", "HEAD")
REDIRECTS = (301, 302, 303, 307, 308)
# Fetch a file into `path`: fetch(url, path, digest=, headers=, identifier=, filling=)
Fetch = Callable[..., object]


def oci_error(status: int, code: str, message: str) -> Response:
    return Response.json({"errors": [{"code": code, "message": message, "detail": None}]}, status)


_FAILURES = {errors.DigestMismatch: (502, "DIGEST_INVALID"), errors.DownloadTimeout: (504, "UNKNOWN"),
             errors.LocalIOError: (507, "UNKNOWN"), errors.P2PUnavailable: (503, "UNAVAILABLE"),
             errors.SourceError: (502, "UNAVAILABLE"), UpstreamDown: (502, "UNAVAILABLE")}


class RegistryMirror:
    def __init__(self, upstream_url: str, upstream: Upstream, cache: Cache, fetch: Fetch,
                 fetch_timeout_s: float, tokens: Optional[BearerTokens] = None,
                 outage: Optional[OutageMemory] = None, imported: Optional[ImportedImages] = None):
        parts = urlsplit(upstream_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("--registry-mirror must be an http(s) URL, got %r" % upstream_url)
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path
        self.base_url = "%s://%s%s" % (parts.scheme, parts.netloc, parts.path)
        self.upstream = upstream
        self.cache = cache
        self.fetch = fetch
        self.fetch_timeout_s = fetch_timeout_s
        self.tokens = tokens
        self.outage = outage   # what may still be served while the registry is unreachable
        self.imported = imported   # what `dfly import` put here: served while it is unreachable

    def handle(self, request: FrontRequest) -> Response:
        if request.method not in READ_METHODS:
            refused = oci_error(405, "UNSUPPORTED", "this mirror is read-only; push to the registry itself")
            refused.headers["Allow"] = ", ".join(sorted(READ_METHODS))   # a 405 names what is allowed
            return refused
        try:
            where = oci.parse_path(request.path)
        except oci.BadName as e:
            return oci_error(400, e.code, str(e))
        if where is None:
            return oci_error(404, "NOT_FOUND", "not a registry API path")
        try:
            if where.kind == "blob" and request.method == "GET":
                return self._blob(request, where.name, where.reference)
            if where.kind in ("manifest", "base") and self.outage is not None and self.outage.on:
                return self._remembering(request, where)
            return self._pass(request)
        except tuple(_FAILURES) as e:
            answer = self._imported(request, where, e)
            if answer is not None:
                return answer
            status, code = next(v for k, v in _FAILURES.items() if isinstance(e, k))
            log.warning("%s %s: %s", request.method, request.path[:200], e)
            return oci_error(status, code, str(e))

    def _imported(self, request: FrontRequest, where: oci.RegistryPath,
                  error: Exception) -> Optional[Response]:
        """While the registry cannot be reached at all, the manifests `dfly import` put here
        (peer/imported.py) are served, to any client: the operator chose to import them.
        (Their blobs: _outage_credentials.)"""
        if not (isinstance(error, UpstreamDown) and error.unreachable and self.imported is not None):
            return None
        if where.kind == "base" and self.imported.any():
            return Response(200, b"{}", API_HEADERS)
        if where.kind == "manifest":
            kept = self.imported.manifest(where.name, where.reference)
            if kept is None:
                return None
            headers = [("Content-Type", kept.media_type), ("Docker-Content-Digest", kept.digest),
                       ("ETag", '"%s"' % kept.digest)]
            return serve_file(kept.path, None, headers)   # (a HEAD: its length, no body)
        return None

    # pass-through ------------------------------------------------------------------------
    def _pass(self, request: FrontRequest) -> Response:
        target = self.base_path + request.target
        reply, _ = self._open(request.method, target, header_pairs(request.headers.items()))
        return Response(reply.status, Streamed(reply, reply.length), reply.headers)

    def _remembering(self, request: FrontRequest, where: oci.RegistryPath) -> Response:
        """Pass a manifest or base request through, remembering what outage mode may
        answer later; while the registry is unreachable, answer that (or the 502)."""
        authorization = request.headers.get("Authorization") or ""
        accept = request.headers.get("Accept") or ""
        try:
            reply, _ = self._open(request.method, self.base_path + request.target,
                                  header_pairs(request.headers.items()))
        except UpstreamDown as down:
            kept = None
            if down.unreachable and where.kind == "manifest":
                kept = self.outage.manifest(where.name, where.reference, accept, authorization)
            elif down.unreachable:
                kept = self.outage.base(authorization)
            if kept is None:
                raise
            log.warning("registry unreachable (%s): %s answered as remembered", down,
                        request.path[:200])
            return Response(kept.status, kept.body, kept.headers)
        small = reply.length is not None and reply.length <= MAX_ONE_MANIFEST
        keep = request.method == "GET" and small and (
            (where.kind == "manifest" and reply.status == 200)
            or (where.kind == "base" and not authorization))
        if not keep:
            return Response(reply.status, Streamed(reply, reply.length), reply.headers)
        with reply:
            body = reply.read_all(MAX_ONE_MANIFEST)
        if where.kind == "manifest":
            self.outage.manifest_answered(where.name, where.reference, accept, authorization,
                                          reply.headers, body)
        else:
            self.outage.base_answered(reply.status, reply.headers, body)
        return Response(reply.status, body, reply.headers)

    def _open(self, method: str, target: str, pairs) -> Tuple[UpstreamResponse, list]:
        """One upstream request, and the headers it finally went with. Refused with a Bearer
        challenge while the client sent Basic credentials, it is sent again with a token
        fetched with those credentials (scoped as the registry asked)."""
        reply = self.upstream.open(method, self.scheme, self.host, self.port, target, pairs)
        basic = next((v for k, v in pairs if k.lower() == "authorization"
                      and v[:6].lower() == "basic "), None)
        if reply.status != 401 or basic is None or self.tokens is None:
            return reply, pairs
        challenge = parse_challenge(reply.header("WWW-Authenticate"))
        token = self.tokens.token(challenge, basic) if challenge is not None else None
        if token is None:
            return reply, pairs   # the registry's own refusal, challenge included
        reply.close()
        pairs = [(k, v) for k, v in pairs if k.lower() != "authorization"]
        pairs.append(("Authorization", "Bearer " + token))
        return self.upstream.open(method, self.scheme, self.host, self.port, target, pairs), pairs

    # blobs -------------------------------------------------------------------------------
    def _blob(self, request: FrontRequest, name: str, digest: str) -> Response:
        try:
            credentials = self._may_read(request, name, digest)
        except UpstreamDown as e:
            credentials = self._outage_credentials(request, name, digest, e)
        if credentials is None:
            return self._pass(request)   # the upstream's own answer: 401 and its challenge, 404...
        url = "%s/v2/%s/blobs/%s" % (self.base_url, name, digest)
        entry = self.cache.begin(blob_key(digest),
                                 lambda into, filling: self.fetch(url, into, digest=digest,
                                                                  headers=credentials,
                                                                  identifier=digest, filling=filling))
        return serve_entry(entry, request.headers.get("Range"),
                           [("Content-Type", "application/octet-stream"),
                            ("Docker-Content-Digest", digest), ("ETag", '"%s"' % digest)],
                           self.fetch_timeout_s)

    def _may_read(self, request: FrontRequest, name: str, digest: str) -> Optional[Dict[str, str]]:
        """Does the upstream let this client read this blob (HEAD with its credentials)?
        The Authorization that it accepted (for the P2P task), or None when it refused."""
        headers = allowed_pairs(request.headers.items(), ("range", "if-range", "if-none-match",
                                                          "if-modified-since"))
        target = "%s/v2/%s/blobs/%s" % (self.base_path, name, digest)
        reply, used = self._open("HEAD", target, headers)
        with reply:
            if not (200 <= reply.status < 300 or reply.status in REDIRECTS):
                return None
        if self.outage is not None:
            self.outage.blob_granted(name, digest, request.headers.get("Authorization") or "")
        return {k: v for k, v in used if k.lower() == "authorization"}

    def _outage_credentials(self, request: FrontRequest, name: str, digest: str,
                            down: UpstreamDown) -> Dict[str, str]:
        """Outage mode: the registry cannot be reached at all, and within the grant window
        it let these very credentials read this blob in this repository: go on as it
        would (the cache, else the P2P cluster). Anything else: the 502 it was."""
        authorization = request.headers.get("Authorization") or ""
        if down.unreachable and self.imported is not None and self.imported.has_blob(digest):
            log.warning("registry unreachable (%s): imported blob %s served", down, digest[:19])
            return {}   # from the cache, else the cluster's (imported) task
        if not (down.unreachable and self.outage is not None
                and self.outage.blob_allowed(name, digest, authorization)):
            raise down
        log.warning("registry unreachable (%s): blob %s of %s served to a client it let read it "
                    "within %gs", down, digest[:19], name, self.outage.ttl_s)
        return {"Authorization": authorization} if authorization else {}


def blob_key(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return "%s-%s" % (algorithm, hexdigest)


def serve_file(path: str, range_header: Optional[str], headers) -> Response:
    """A cached file, whole or the one range asked for."""
    length = os.path.getsize(path)
    headers = list(headers) + [("Accept-Ranges", "bytes")]
    try:
        wanted = parse_range(range_header, length)
    except RangeNotSatisfiable:
        return Response(416, b"", headers + [("Content-Range", "bytes */%d" % length)])
    if wanted is None:
        return Response(200, FileSlice(path, 0, length), headers)
    first, last = wanted
    return Response(206, FileSlice(path, first, last - first + 1),
                    headers + [("Content-Range", content_range(first, last, length))])


def serve_entry(entry: Union[str, Filling], range_header: Optional[str], headers,
                timeout_s: float) -> Response:
    """A cached file (a path), or one still being filled: then the status line waits for the
    first bytes of what was asked, so a download that fails before them is a clean error."""
    if isinstance(entry, str):
        return serve_file(entry, range_header, headers)
    reader = FillReader(entry, timeout_s)
    try:
        length = reader.wait_length()
        headers = list(headers) + [("Accept-Ranges", "bytes")]
        try:
            wanted = parse_range(range_header, length)
        except RangeNotSatisfiable:
            reader.close()
            return Response(416, b"", headers + [("Content-Range", "bytes */%d" % length)])
        first, last = wanted if wanted is not None else (0, length - 1)
        reader.wait_past(first)
    except BaseException:
        reader.close()
        raise
    body = Spans(reader.spans(first, last + 1), last - first + 1)
    if wanted is None:
        return Response(200, body, headers)
    return Response(206, body, headers + [("Content-Range", content_range(first, last, length))])
