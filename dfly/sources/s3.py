"""s3://bucket/key sources: signed GETs (protocol/sigv4.py) over the http source.

Without --s3-endpoint the object is at AWS (https://BUCKET.s3.REGION.amazonaws.com/KEY,
virtual-hosted); with one (an S3-compatible store) it is at ENDPOINT/BUCKET/KEY
(path-style, which they all speak). Either URL is judged by the source policy
as any http source's is. The validator is the object's ETag. S3 does not
honour If-Range, so a resume asks for the range with If-Match: an object
changed since (412) is fetched whole instead, which is what If-Range would
have answered, so the fetchers start a new content version and never mix two.

Credentials come as data (config.SourceCredentials): the provider chain the
wiring built (credentials.py, s3auth.py: settings, environment, credentials
file, container endpoint, instance role), asked at each open so temporary keys
are refreshed before they expire; given plain settings, only their keys. None:
unsigned (a public bucket). A 403 is told as a denial, with S3's error code,
never the secret.

The region: the one S3 named for the bucket before, else --s3-region, else the
one the wiring found (environment, config file), else S3 is asked: the request goes
to the global endpoint signed for us-east-1, and a bucket elsewhere answers 301
(or 400 AuthorizationHeaderMalformed) naming its region in x-amz-bucket-region
(or the error's <Region>; else a HEAD of the bucket says it): the request is
signed again for that region, once, and the region kept for the bucket.
"""
import datetime
import re
import urllib.error
import urllib.request
from typing import Dict, Optional
from urllib.parse import quote, unquote, urlsplit

from dfly.errors import SourceError
from dfly.protocol.sigv4 import EMPTY_SHA256, authorization
from dfly.sources import http
from dfly.sources.config import SourceOptions, credentials_of
from dfly.sources.s3auth import Credentials

GUESSED_REGION = "us-east-1"   # what the global endpoint signs for
_REGION = re.compile(r"^[a-z0-9-]{1,40}$")


class WrongRegion(Exception):
    def __init__(self, region: str):
        super().__init__(region)
        self.region = region


def open_url(url: str, headers: Dict[str, str], timeout_s: float, policy,
             options: SourceOptions, now: Optional[datetime.datetime] = None):
    parts = urlsplit(url)
    bucket, key = parts.netloc, unquote(parts.path.lstrip("/"))
    if not bucket or not key:
        raise SourceError("an s3 URL is s3://BUCKET/KEY: %s" % url[:200])
    asked = dict(headers)
    match = asked.pop("If-Range", None)
    if match is not None and "Range" in asked:
        asked["If-Match"] = match
    when = now or datetime.datetime.now(datetime.timezone.utc)
    creds = find_credentials(options, when)
    try:
        return _get_in_region(url, bucket, key, asked, timeout_s, policy, options, creds, when)
    except urllib.error.HTTPError as e:
        if e.code != 412 or "If-Match" not in asked:
            raise
        e.close()   # changed since the range's version: the whole object, as If-Range would
        del asked["If-Match"], asked["Range"]
        return _get_in_region(url, bucket, key, asked, timeout_s, policy, options, creds, when)


def object_url(bucket: str, key: str, options: SourceOptions, region: str = "") -> str:
    path = quote(key, safe="/~")
    if options.s3_endpoint:
        return "%s/%s/%s" % (options.s3_endpoint.rstrip("/"), bucket, path)
    if not region:
        return "https://%s.s3.amazonaws.com/%s" % (bucket, path)
    return "https://%s.s3.%s.amazonaws.com/%s" % (bucket, region, path)


def find_credentials(options: SourceOptions, now: datetime.datetime) -> Optional[Credentials]:
    """The keys to sign with now: the given chain's, else the settings' own."""
    chain = credentials_of(options).s3
    if chain is not None:
        return chain.get(now.timestamp())
    if options.s3_access_key_id and options.s3_secret_access_key:
        return Credentials(options.s3_access_key_id, options.s3_secret_access_key)
    return None


def known_region(options: SourceOptions, bucket: str) -> str:
    """The region to sign for first: the bucket's own once S3 named it (it overrules a
    setting that was wrong), else the setting's, else the environment's ("": unknown)."""
    known = credentials_of(options)
    return known.s3_regions.get(bucket) or options.s3_region or known.s3_region


def signed_headers(target: str, headers: Dict[str, str], creds: Optional[Credentials],
                   region: str, now: datetime.datetime) -> Dict[str, str]:
    """`headers` with what S3 checks added: Host, X-Amz-Date, the payload hash, and
    (with credentials) the session token and Authorization over all of them."""
    parts = urlsplit(target)
    out = dict(headers)
    if creds is None:
        return out
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    out.update({"Host": parts.netloc, "X-Amz-Date": amz_date,
                "X-Amz-Content-Sha256": EMPTY_SHA256})
    if creds.token:
        out["X-Amz-Security-Token"] = creds.token
    signed = {k: v for k, v in out.items() if k.lower() not in ("user-agent",)}
    out["Authorization"] = authorization("GET", unquote(parts.path), [], signed, EMPTY_SHA256,
                                         creds.access_key, creds.secret_key, region, "s3",
                                         amz_date)
    return out


def _get_in_region(url: str, bucket: str, key: str, headers: Dict[str, str], timeout_s: float,
                   policy, options: SourceOptions, creds: Optional[Credentials], when):
    region = known_region(options, bucket)
    try:
        return _get(url, object_url(bucket, key, options, region), headers, timeout_s, policy,
                    options, creds, region or GUESSED_REGION, when)
    except WrongRegion as e:
        found = e.region
    credentials_of(options).s3_regions[bucket] = found
    try:
        return _get(url, object_url(bucket, key, options, found), headers, timeout_s, policy,
                    options, creds, found, when)
    except WrongRegion as e:   # sent on once already: S3 contradicts itself
        raise SourceError("S3 named region %s for %s, then %s" % (found, url.split("?")[0], e.region))


def _get(url: str, target: str, headers: Dict[str, str], timeout_s: float, policy,
         options: SourceOptions, creds: Optional[Credentials], region: str, when):
    """The object at `target` signed for `region`; WrongRegion when S3 names another."""
    try:
        return http.open_url(target, signed_headers(target, headers, creds, region, when),
                             timeout_s, policy, options)
    except urllib.error.HTTPError as e:
        if e.code in (301, 307, 400):
            found = _region_of(e, urlsplit(url).netloc, timeout_s, policy, options)
            if found and found != region:
                e.close()
                raise WrongRegion(found)
        if e.code != 403:
            raise
        code = _error_code(e)
        e.close()
        raise SourceError("S3 denied access to %s (%s): check the credentials and the "
                          "bucket's policy" % (url.split("?")[0], code or "403 Forbidden"))


def _region_of(e: urllib.error.HTTPError, bucket: str, timeout_s: float, policy,
               options: SourceOptions) -> str:
    """The bucket's region a wrong-region reply names ("" when it names none: then
    the error stands, its body perhaps read)."""
    region = (e.headers.get("x-amz-bucket-region") or "").strip() if e.headers else ""
    if not region:
        try:
            body = e.read(4096).decode("utf-8", "replace")
        except Exception:   # the body is only for the region
            body = ""
        m = re.search(r"<Region>([^<]{1,40})</Region>", body)
        region = m.group(1).strip() if m else ""
    if not region and e.code == 301:
        region = _head_bucket_region(object_url(bucket, "", options), timeout_s, policy, options)
    return region if _REGION.match(region) else ""


def _head_bucket_region(bucket_url: str, timeout_s: float, policy, options: SourceOptions) -> str:
    """x-amz-bucket-region from a HEAD of the bucket (S3 names it even when it refuses)."""
    from dfly.protocol import redirects
    request = urllib.request.Request(bucket_url, method="HEAD")
    try:
        reply = redirects.urlopen(request, timeout=timeout_s, policy=policy,
                                  context=http.tls_context(options))
    except urllib.error.HTTPError as e:
        reply = e
    except OSError:
        return ""
    try:
        return (reply.headers.get("x-amz-bucket-region") or "").strip()
    finally:
        reply.close()


def _error_code(e: urllib.error.HTTPError) -> str:
    try:
        body = e.read(4096).decode("utf-8", "replace")
    except Exception:   # the body is only for the message
        return ""
    m = re.search(r"<Code>([A-Za-z]{1,60})</Code>", body)
    return m.group(1) if m else ""
