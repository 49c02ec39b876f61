"""Preheat, as the rules of it: the request bodies Harbor sends, the jobs they
become, and which blobs an image is made of. Pure: values in, values out.

Two dialects name one thing. Dragonfly 1.x (Harbor up to 2.11) posts
`{"type", "url", "headers", "image", "tag", "digest"}` to /preheats and reads
`{"ID", "status", "startTime", "finishTime", "errorMsg"}`; Dragonfly 2's manager
(Harbor 2.12+) posts `{"type": "preheat", "args": {"type", "url", "headers",
"scope", ...}}` to /oapi/v1/jobs and reads `{"id", "state", "created_at",
"updated_at", "result": {"job_states": [...]}}`. Both parse to one
PreheatRequest and run as one Job; each API only renders it its own way.

A bad body is a BadRequest that names the field (`args.url`), so a caller
fixes the right thing. An image preheat is walked manifest by manifest: an
index names per-platform manifests (filtered by the platforms asked for), a
manifest names its config and layers, which become tasks keyed by digest,
exactly as the daemons' registry mirror keys them (peer/registry.py).
"""
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, List, NamedTuple, Optional, Tuple

from dfly.errors import BadRequest
from dfly.protocol import oci
from dfly.protocol.address import CLIENT_IPV6_PREFIX, client_key
from dfly.protocol.messages import HOP_HEADERS, MAX_URL_LEN
from dfly.protocol.urls import normalize_url

KINDS = ("image", "file")
# Dragonfly 2's scopes. Every one preheats into the supernode cluster; "all_peers"
# also publishes it to the subscribed daemons (protocol/publications.py).
SCOPES = ("single_seed_peer", "all_seed_peers", "all_peers")
SCOPE_ALL_PEERS = "all_peers"
PLATFORM = re.compile(r"\A[a-z0-9_.-]{1,32}/[a-z0-9_.-]{1,32}(?:/[a-z0-9_.-]{1,32})?\Z")
MAX_PLATFORMS = 16
MAX_HEADERS = 64

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
ACCEPT = ", ".join(INDEX_TYPES + MANIFEST_TYPES)
MAX_MANIFEST_BYTES = 4 << 20
MAX_MANIFESTS = 64        # per-platform manifests one image may name
MAX_BLOBS = 4096          # blobs one image may name

# Job states, and how each API says them.
WAITING, RUNNING, SUCCESS, FAILED = "WAITING", "RUNNING", "SUCCESS", "FAILED"
V2_STATES = {WAITING: "PENDING", RUNNING: "PENDING", SUCCESS: "SUCCESS", FAILED: "FAILURE"}
PEERS_NOT_YET = ("scope all_peers: delivered to the supernode cluster's cache only; this "
                 "supernode keeps no publish log")


class PreheatRequest(NamedTuple):
    kind: str                      # "image" or "file"
    url: str                       # manifest URL (image) or the file's URL
    headers: Dict[str, str]        # sent to the registry / origin (its token)
    platforms: Tuple[str, ...] = ()   # "os/arch[/variant]"; empty: every platform
    scope: str = ""
    filters: Tuple[str, ...] = ()  # query parameters left out of a file task's identity

    def key(self) -> str:
        """What makes two preheats the same job (the credentials do not)."""
        return "\n".join([self.kind, self.url, ",".join(sorted(self.platforms)),
                          ",".join(sorted(self.filters))]
                         + (["published"] if self.scope == SCOPE_ALL_PEERS else []))


class ImageRef(NamedTuple):
    base: str        # scheme://host[:port][/prefix] of the registry
    name: str        # repository
    reference: str   # tag or digest

    def manifest_url(self, reference: str) -> str:
        return "%s/v2/%s/manifests/%s" % (self.base, self.name, reference)

    def blob_url(self, digest: str) -> str:
        return "%s/v2/%s/blobs/%s" % (self.base, self.name, digest)


class Blob(NamedTuple):
    digest: str
    size: int


class BadManifest(ValueError):
    """What the registry sent is not a manifest this preheat can walk."""


# parsing ---------------------------------------------------------------------------------

def parse_v1(body) -> PreheatRequest:
    """Dragonfly 1.x's body, as Harbor up to 2.11 sends it."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    kind = _choice(body, "type", KINDS, "type")
    url = _url(body.get("url"), "url")
    headers = _headers(body.get("headers"), "headers")
    for name in ("image", "tag", "digest", "scope"):
        _opt_str(body, name, name)
    if kind == "image":
        image_ref(url, "url")
    return PreheatRequest(kind, url, headers, scope=_scope(body.get("scope"), "scope"))


def parse_v2(body) -> PreheatRequest:
    """Dragonfly 2's job body, as Harbor 2.12+ sends it."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    if body.get("type") != "preheat":
        raise BadRequest("field 'type': only 'preheat' jobs are run here, got %r"
                         % _shown(body.get("type")))
    args = body.get("args")
    if not isinstance(args, dict):
        raise BadRequest("field 'args': must be an object")
    ids = body.get("scheduler_cluster_ids")
    if ids is not None and not (isinstance(ids, list) and all(_is_int(i) for i in ids)):
        raise BadRequest("field 'scheduler_cluster_ids': must be a list of integers")
    kind = _choice(args, "type", KINDS, "args.type")
    url = _url(args.get("url"), "args.url")
    headers = _headers(args.get("headers"), "args.headers")
    for name in ("tag", "username", "password"):
        _opt_str(args, name, "args." + name)
    filters = _filters(args.get("filtered_query_params", args.get("filteredQueryParams")),
                       "args.filtered_query_params")
    for name in ("concurrent_count", "timeout"):
        if args.get(name) is not None and not _is_int(args.get(name)):
            raise BadRequest("field 'args.%s': must be an integer" % name)
    if kind == "image":
        image_ref(url, "args.url")
    return PreheatRequest(kind, url, headers, _platforms(args.get("platform"), "args.platform"),
                          _scope(args.get("scope"), "args.scope"), filters)


def image_ref(url: str, where: str = "url") -> ImageRef:
    """The registry, repository and tag/digest of a manifest URL (.../v2/<repo>/manifests/<ref>)."""
    scheme, sep, rest = url.partition("://")
    slash = rest.find("/")
    path = rest[slash:] if slash >= 0 else ""
    at = path.find("/v2/")
    if not sep or at < 0 or scheme.lower() not in ("http", "https"):
        raise BadRequest("field %r: an image preheat needs a manifest URL "
                         "(http(s)://REGISTRY/v2/REPOSITORY/manifests/TAG), got %r" % (where, url[:200]))
    try:
        found = oci.parse_path(path[at:])
    except oci.BadName as e:
        raise BadRequest("field %r: %s" % (where, e))
    if found is None or found.kind != "manifest":
        raise BadRequest("field %r: not a manifest URL (.../v2/REPOSITORY/manifests/TAG): %r"
                         % (where, url[:200]))
    return ImageRef("%s://%s%s" % (scheme, rest[:slash], path[:at]), found.name, found.reference)


def _choice(body: dict, name: str, choices, where: str) -> str:
    value = body.get(name)
    if value not in choices:
        raise BadRequest("field %r: must be one of %s, got %r" % (where, "/".join(choices), _shown(value)))
    return value


def _url(value, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest("field %r: missing (the URL to preheat)" % where)
    if len(value) > MAX_URL_LEN:
        raise BadRequest("field %r: over %d characters" % (where, MAX_URL_LEN))
    try:   # as every request parser does: one file typed two ways is one task
        return normalize_url(value)
    except BadRequest as e:
        raise BadRequest("field %r: %s" % (where, e))


def _headers(value, where: str) -> Dict[str, str]:
    """Harbor sends a JSON object of string values; a null or absent one is none."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_HEADERS:
        raise BadRequest("field %r: must be an object of at most %d headers" % (where, MAX_HEADERS))
    out = {}
    for k, v in value.items():
        if not isinstance(v, str) or not k or len(k) > 256 or len(v) > 8192 \
                or any(c in k + v for c in "\r\n\0") or ":" in k:
            raise BadRequest("field %r: bad header %r" % (where, k[:64]))
        if k.lower() not in HOP_HEADERS:
            out[k] = v
    return out


def _opt_str(body: dict, name: str, where: str) -> Optional[str]:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or len(value) > 1024):
        raise BadRequest("field %r: must be a string" % where)
    return value


def _scope(value, where: str) -> str:
    if value in (None, ""):
        return ""
    if value not in SCOPES:
        raise BadRequest("field %r: must be one of %s, got %r" % (where, "/".join(SCOPES), _shown(value)))
    return value


def _platforms(value, where: str) -> Tuple[str, ...]:
    if value in (None, ""):
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > MAX_PLATFORMS \
            or not all(isinstance(p, str) and PLATFORM.match(p.strip()) for p in items):
        raise BadRequest("field %r: must be os/arch[/variant] (as linux/amd64), or a list of them"
                         % where)
    return tuple(p.strip() for p in items)


def _filters(value, where: str) -> Tuple[str, ...]:
    if value in (None, ""):
        return ()
    if not isinstance(value, str) or len(value) > 1024:
        raise BadRequest("field %r: must be a string like 'Expires&Signature'" % where)
    return tuple(n for n in re.split(r"[&,]", value) if n)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value) -> str:
    return value[:64] if isinstance(value, str) else value if value is None else type(value).__name__


# manifests -------------------------------------------------------------------------------

class Walked(NamedTuple):
    manifests: List[str]   # per-platform manifest digests still to fetch (from an index)
    blobs: List[Blob]      # config and layers (from a manifest)


def walk(body: bytes, media_type: str, platforms: Tuple[str, ...] = ()) -> Walked:
    """What one manifest or index names; BadManifest when it is neither."""
    if len(body) > MAX_MANIFEST_BYTES:
        raise BadManifest("manifest over %d bytes" % MAX_MANIFEST_BYTES)
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):   # [[[[... nested past the stack
        raise BadManifest("the registry's manifest is not JSON")
    if not isinstance(doc, dict):
        raise BadManifest("the registry's manifest is not a JSON object")
    kind = doc.get("mediaType") or media_type.split(";")[0].strip()
    if kind in INDEX_TYPES or (not kind and isinstance(doc.get("manifests"), list)):
        return Walked(_platform_manifests(doc, platforms), [])
    if kind in MANIFEST_TYPES or (not kind and isinstance(doc.get("layers"), list)):
        return Walked([], _blobs(doc))
    raise BadManifest("unsupported manifest type %r (schema 1 and others cannot be preheated)"
                      % str(kind)[:100])


def _platform_manifests(doc: dict, platforms: Tuple[str, ...]) -> List[str]:
    entries = doc.get("manifests")
    if not isinstance(entries, list) or len(entries) > MAX_MANIFESTS:
        raise BadManifest("an index must list at most %d manifests" % MAX_MANIFESTS)
    out = []
    for entry in entries:
        digest = entry.get("digest") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or not oci.DIGEST.match(digest):
            raise BadManifest("an index entry has no valid digest")
        if platforms and _platform_of(entry) not in platforms \
                and _platform_of(entry, variant=False) not in platforms:
            continue
        if digest not in out:
            out.append(digest)
    if not out:
        raise BadManifest("the index has no manifest for platform %s" % ", ".join(platforms))
    return out


def manifest_platforms(body: bytes) -> Dict[str, str]:
    """An index's per-platform manifest digests -> "os/arch[/variant]" (empty for a
    manifest, or an entry that names no platform): which platform each blob is for."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {}
    entries = doc.get("manifests") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        return {}
    return {e["digest"]: _platform_of(e) for e in entries[:MAX_MANIFESTS]
            if isinstance(e, dict) and isinstance(e.get("digest"), str) and _platform_of(e)}


def _platform_of(entry: dict, variant: bool = True) -> str:
    p = entry.get("platform")
    if not isinstance(p, dict):
        return ""
    text = "%s/%s" % (p.get("os", ""), p.get("architecture", ""))
    return text + "/" + p["variant"] if variant and isinstance(p.get("variant"), str) else text


def _blobs(doc: dict) -> List[Blob]:
    layers = doc.get("layers")
    config = doc.get("config")
    if not isinstance(layers, list) or not isinstance(config, dict) or len(layers) > MAX_BLOBS:
        raise BadManifest("a manifest must have a config and at most %d layers" % MAX_BLOBS)
    out = []
    for entry in [config] + layers:
        digest = entry.get("digest") if isinstance(entry, dict) else None
        size = entry.get("size") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or not oci.DIGEST.match(digest) or not _is_int(size) or size < 0:
            raise BadManifest("a manifest entry has no valid digest and size")
        if digest not in [b.digest for b in out]:
            out.append(Blob(digest, size))
    return out


# jobs ------------------------------------------------------------------------------------

@dataclass
class TaskResult:
    url: str
    state: str = RUNNING     # RUNNING, SUCCESS or FAILED
    description: str = ""


@dataclass
class Job:
    """One preheat: its request, its state, one result per blob or file. Times are wall
    clock seconds (they are shown as dates)."""
    id: int
    request: PreheatRequest
    client: str
    created_at: float
    state: str = WAITING
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    error: str = ""
    note: str = ""
    tasks: Dict[str, TaskResult] = field(default_factory=dict)
    blobs: List[Blob] = field(default_factory=list)   # what an image resolved to
    platforms: Dict[str, List[str]] = field(default_factory=dict)   # blob digest -> its platforms
    publication: Optional[int] = None   # its seq in the publish log (scope all_peers)

    def started(self, now: float) -> None:
        self.state, self.started_at = RUNNING, now

    def task_added(self, key: str, url: str) -> None:
        self.tasks.setdefault(key, TaskResult(url))

    def task_done(self, key: str) -> None:
        self.tasks[key].state = SUCCESS

    def task_failed(self, key: str, why: str) -> None:
        self.tasks[key].state, self.tasks[key].description = FAILED, why

    def finished(self, now: float) -> None:
        """SUCCESS when every task is; else FAILED with the first task's reason."""
        failed = [t for t in self.tasks.values() if t.state != SUCCESS]
        if failed:
            self.failed(failed[0].description or "not finished", now)
            return
        self.state, self.finished_at = SUCCESS, now
        if self.request.scope == SCOPE_ALL_PEERS and self.publication is None:
            self.note = PEERS_NOT_YET

    def failed(self, why: str, now: float) -> None:
        self.state, self.finished_at, self.error = FAILED, now, why

    @property
    def over(self) -> bool:
        return self.state in (SUCCESS, FAILED)

    def v1(self) -> dict:
        return {"ID": str(self.id), "status": self.state, "startTime": _date(self.started_at),
                "finishTime": _date(self.finished_at), "errorMsg": self.error, "note": self.note}

    def v2(self, hostname: str, ip: str) -> dict:
        ok = [{"url": t.url, "hostname": hostname, "ip": ip}
              for t in self.tasks.values() if t.state == SUCCESS]
        bad = [{"url": t.url, "hostname": hostname, "ip": ip, "description": t.description}
               for t in self.tasks.values() if t.state == FAILED]
        state = V2_STATES[self.state]
        return {"id": self.id, "type": "preheat", "state": state,
                "created_at": _date(self.created_at),
                "updated_at": _date(self.finished_at or self.started_at or self.created_at),
                "args": {"type": self.request.kind, "url": self.request.url,
                         "scope": self.request.scope, "platform": ",".join(self.request.platforms)},
                "result": {"job_states": [{"state": state, "error": self.error, "note": self.note,
                                           "results": [{"success_tasks": ok, "failure_tasks": bad,
                                                        "scheduler_cluster_id": 1}]}]}}

    def progress(self) -> Tuple[int, int]:
        """(tasks done, tasks known)."""
        return sum(1 for t in self.tasks.values() if t.state == SUCCESS), len(self.tasks)


def _date(when: Optional[float]) -> str:
    """RFC 3339 in UTC, as Go's time.Time reads it; "" for not yet."""
    if when is None:
        return ""
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Limits(NamedTuple):
    max_per_client: int = 4      # waiting or running jobs one client host may have
    max_waiting: int = 64        # waiting or running jobs in all
    max_records: int = 256       # finished jobs remembered
    keep_s: float = 3600.0       # how long a finished job is remembered
    fresh_s: float = 60.0        # a job that succeeded this recently: "already preheated" (208)
    client_ipv6_prefix: int = CLIENT_IPV6_PREFIX   # IPv6 clients counted by this prefix (address.py)


class TooMany(Exception):
    """Over a limit: the caller should try again later (429)."""


class Jobs:
    """The job table: submit deduplicates and bounds, prune forgets. Callers hold a lock."""

    def __init__(self, limits: Limits = Limits()):
        self.limits = limits
        self._jobs: Dict[int, Job] = {}
        self._next_id = 1

    def submit(self, request: PreheatRequest, client: str, now: float) -> Tuple[Job, bool]:
        """(the job, whether it is new). The same preheat waiting or running is that job;
        one that succeeded in the last fresh_s is answered as done (not new)."""
        self.prune(now)
        for job in self._jobs.values():
            same = job.request.key() == request.key()
            if same and (not job.over or (job.state == SUCCESS and job.finished_at is not None
                                          and now - job.finished_at < self.limits.fresh_s)):
                return job, False
        live = [j for j in self._jobs.values() if not j.over]
        if len(live) >= self.limits.max_waiting:
            raise TooMany("%d preheats are waiting or running: try again later" % len(live))
        prefix = self.limits.client_ipv6_prefix
        key = client_key(client, prefix)
        if sum(1 for j in live if client_key(j.client, prefix) == key) >= self.limits.max_per_client:
            raise TooMany("%s has %d preheats waiting or running: try again later"
                          % (key, self.limits.max_per_client))
        job = Job(self._next_id, request, client, now)
        self._next_id += 1
        self._jobs[job.id] = job
        return job, True

    def get(self, job_id: int) -> Optional[Job]:
        return self._jobs.get(job_id)

    def prune(self, now: float) -> None:
        over = sorted((j for j in self._jobs.values() if j.over), key=lambda j: j.finished_at or 0)
        excess = len(over) - self.limits.max_records
        for i, job in enumerate(over):
            if i < excess or now - (job.finished_at or 0) > self.limits.keep_s:
                del self._jobs[job.id]

    def __len__(self) -> int:
        return len(self._jobs)


def parse_job_id(text: str) -> int:
    if not re.match(r"\A[0-9]{1,12}\Z", text):
        raise BadRequest("a preheat id is a number, got %r" % text[:40])
    return int(text)


# the command line ------------------------------------------------------------------------

DOCKER_HUB = "registry-1.docker.io"


def target_url(text: str, plain_http: bool = False) -> Tuple[str, str]:
    """("image" or "file", URL) for `dfly preheat TARGET`: a URL (an image when it is an
    http(s) manifest URL; else a file, of any source kind dfly reads), else an image
    reference REGISTRY/REPOSITORY[:TAG][@DIGEST] (no registry: Docker Hub) made its
    manifest URL, https unless `plain_http`."""
    if re.match(r"\A[a-z][a-z0-9+.-]*://", text, re.I):   # a URL: of any source kind
        url = _url(text, "URL")
        try:
            image_ref(url)
            return "image", url
        except BadRequest:
            return "file", url
    name, reference = text, "latest"
    if "@" in name:
        name, reference = name.split("@", 1)
    elif ":" in name.rsplit("/", 1)[-1]:
        name, reference = name.rsplit(":", 1)
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name if "/" in name else "library/" + name
    url = "%s://%s/v2/%s/manifests/%s" % ("http" if plain_http else "https", registry, repository,
                                          reference)
    try:   # the registry checked as any URL's host: IPv6 in brackets, no zone id
        url = normalize_url(url)
    except BadRequest as e:
        raise BadRequest("bad registry in image reference %r: %s (an IPv6 registry is written "
                         "[ADDR]:PORT/REPOSITORY)" % (text[:200], e))
    try:
        image_ref(url, "IMAGE")
    except BadRequest:
        raise BadRequest("not an image reference (REGISTRY/REPOSITORY[:TAG][@DIGEST]) nor an "
                         "http(s) URL: %r" % text[:200])
    return "image", url
