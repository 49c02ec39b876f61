"""S3 credentials as the SDKs find them, in their order: explicit (flags or config),
the environment, the shared credentials file, the container endpoint (ECS, EKS Pod
Identity), the instance metadata service (EC2, IMDSv2). The wiring (credentials.py)
reads the environment and the files once and builds a Chain of providers from
plain values; nothing here reads either.

Temporary credentials (container, instance) carry an Expiration: a provider
fetches again when fewer than REFRESH_AHEAD_S are left, so a long-running
supernode signs with fresh keys and a request is never signed with keys that
expire in flight; a refresh that fails meanwhile keeps the keys in hand until
they expire (tried again every RETRY_REFRESH_S). Fetching is lazy: nothing is asked until an s3:// source is
opened with no earlier provider having credentials, so a host that never reads
S3 never calls a metadata endpoint. An instance endpoint that does not answer
means "not on EC2" (no credentials: requests go unsigned, as for a public
bucket) and is not asked again for RETRY_AFTER_S. The session token is sent as
x-amz-security-token by the signer (s3.py).

Wire: IMDSv2 is PUT /latest/api/token (X-aws-ec2-metadata-token-ttl-seconds),
then GET /latest/meta-data/iam/security-credentials/ (the role's name) and
GET .../ROLE (JSON), each with X-aws-ec2-metadata-token; the container endpoint
is one GET with the Authorization header given. Both answer JSON with
AccessKeyId, SecretAccessKey, Token and Expiration (ISO 8601, UTC).
"""
import datetime
import http.client
import json
import logging
import re
import threading
from typing import Callable, List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

from dfly.errors import SourceError

log = logging.getLogger("dfly.sources")

REFRESH_AHEAD_S = 300.0   # fetch anew this long before the keys expire
RETRY_AFTER_S = 300.0     # an instance endpoint that did not answer is not asked again sooner
RETRY_REFRESH_S = 30.0    # a refresh that failed while the keys in hand still work: again this soon
IMDS_TOKEN_TTL_S = 21600
METADATA_TIMEOUT_S = 2.0  # the SDKs' default is 1 s; a loaded host gets a little more
MAX_REPLY = 64 * 1024     # a credentials reply is a few hundred bytes


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str = ""
    expires_at: Optional[float] = None   # seconds since the epoch; None: never


class Static:
    """Credentials known at start (flags, environment, credentials file), or an error
    to tell when they are needed (a credentials file that did not parse)."""

    def __init__(self, credentials: Optional[Credentials], error: str = ""):
        self.credentials = credentials
        self.error = error

    def get(self, now: float) -> Optional[Credentials]:
        if self.error:
            raise SourceError(self.error)
        return self.credentials


class Refreshing:
    """Temporary credentials from `fetch`, fetched again near their expiry. `optional`:
    a failed fetch means "none here" (the instance provider off EC2), else it is an
    error (a container endpoint the environment names must answer)."""

    def __init__(self, fetch: Callable[[], Credentials], name: str, optional: bool = False):
        self.fetch = fetch
        self.name = name
        self.optional = optional
        self._lock = threading.Lock()
        self._credentials: Optional[Credentials] = None
        self._failed_at: Optional[float] = None
        self._retry_s = RETRY_AFTER_S
        self.fetches = 0   # how often it asked (for tests and the log)

    def get(self, now: float) -> Optional[Credentials]:
        with self._lock:   # one fetch at a time: many pieces start together
            if self._fresh(now):
                return self._credentials
            if self._failed_at is None or now - self._failed_at >= self._retry_s:
                self._fetch(now)
            return self._usable(now)

    def _fetch(self, now: float) -> None:
        self.fetches += 1
        try:
            self._credentials = self.fetch()
            self._failed_at = None
            return
        except (OSError, ValueError, http.client.HTTPException) as e:
            why = str(e)[:200] or type(e).__name__
        if self._usable(now) is not None:   # the keys in hand still work: keep them a while
            log.warning("cannot refresh S3 credentials from the %s (%s): using the current "
                        "ones until they expire", self.name, why)
            self._failed_at, self._retry_s = now, RETRY_REFRESH_S
        elif not self.optional:
            raise SourceError("cannot get S3 credentials from the %s: %s" % (self.name, why))
        else:
            log.info("no S3 credentials from the %s (%s)", self.name, why)
            self._failed_at, self._retry_s = now, RETRY_AFTER_S

    def _usable(self, now: float) -> Optional[Credentials]:
        c = self._credentials
        return c if c is not None and (c.expires_at is None or now < c.expires_at) else None

    def _fresh(self, now: float) -> bool:
        c = self._credentials
        return c is not None and (c.expires_at is None or now < c.expires_at - REFRESH_AHEAD_S)


class Chain:
    """The first provider with credentials signs; none: unsigned requests."""

    def __init__(self, providers: List[object]):
        self.providers = providers

    def get(self, now: float) -> Optional[Credentials]:
        for provider in self.providers:
            found = provider.get(now)
            if found is not None:
                return found
        return None


def imds_fetcher(endpoint: str, timeout_s: float = METADATA_TIMEOUT_S) -> Callable[[], Credentials]:
    """Instance-role credentials from the metadata service at `endpoint` (IMDSv2)."""
    def fetch() -> Credentials:
        status, token = _ask(endpoint, "PUT", "/latest/api/token",
                             {"X-aws-ec2-metadata-token-ttl-seconds": str(IMDS_TOKEN_TTL_S)}, timeout_s)
        _expect(status, "a session token")
        headers = {"X-aws-ec2-metadata-token": token.decode("ascii", "replace").strip()}
        base = "/latest/meta-data/iam/security-credentials/"
        status, roles = _ask(endpoint, "GET", base, headers, timeout_s)
        _expect(status, "the instance's role")
        role = roles.decode("utf-8", "replace").strip().splitlines()
        if not role or "/" in role[0] or not role[0].strip():
            raise ValueError("the instance has no IAM role")
        status, body = _ask(endpoint, "GET", base + role[0].strip(), headers, timeout_s)
        _expect(status, "the role's credentials")
        return parse_credentials(body)
    return fetch


def container_fetcher(url: str, authorization: str = "",
                      timeout_s: float = METADATA_TIMEOUT_S) -> Callable[[], Credentials]:
    """Task-role credentials from the container endpoint `url` (ECS, EKS Pod Identity)."""
    parts = urlsplit(url)
    base = "%s://%s" % (parts.scheme, parts.netloc)
    path = parts.path + ("?" + parts.query if parts.query else "")

    def fetch() -> Credentials:
        status, body = _ask(base, "GET", path or "/",
                            {"Authorization": authorization} if authorization else {}, timeout_s)
        _expect(status, "credentials")
        return parse_credentials(body)
    return fetch


def parse_credentials(body: bytes) -> Credentials:
    """The JSON both endpoints answer; ValueError for anything else."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("the reply is not JSON")
    if not isinstance(doc, dict) or doc.get("Code", "Success") != "Success":
        raise ValueError("the reply says %r" % (doc.get("Code") if isinstance(doc, dict) else doc,))
    try:
        key, secret = str(doc["AccessKeyId"]), str(doc["SecretAccessKey"])
    except KeyError:
        raise ValueError("the reply has no AccessKeyId and SecretAccessKey")
    expires = doc.get("Expiration")
    return Credentials(key, secret, str(doc.get("Token") or ""),
                       parse_expiration(expires) if expires else None)


def parse_expiration(text: str) -> float:
    """'2026-12-07T06:00:00Z' (or with +00:00, or fractions) -> seconds since the epoch."""
    # Fractions dropped: Python 3.8's fromisoformat takes 3 or 6 digits only, and no "Z".
    value = re.sub(r"\.\d+", "", str(text).strip()).replace("Z", "+00:00")
    when = datetime.datetime.fromisoformat(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def _ask(base: str, method: str, path: str, headers: dict, timeout_s: float) -> Tuple[int, bytes]:
    """One request straight to the endpoint (never through a proxy: the environment's
    http_proxy must not see a metadata token)."""
    parts = urlsplit(base)
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout_s)
    elif parts.scheme == "http":
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout_s)
    else:
        raise ValueError("not an http(s) endpoint: %s" % base[:100])
    try:
        conn.request(method, parts.path.rstrip("/") + path, headers=headers)
        reply = conn.getresponse()
        return reply.status, reply.read(MAX_REPLY)
    finally:
        conn.close()


def _expect(status: int, what: str) -> None:
    if status != 200:
        raise ValueError("asked for %s, got HTTP %d" % (what, status))
