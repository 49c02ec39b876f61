"""s3://bucket/key sources: signed GETs (protocol/sigv4.py) over the http source.

Without --s3-endpoint the object is at AWS (https://BUCKET.s3.REGION.amazonaws.com/KEY,
virtual-hosted); with one (an S3-compatible store) it is at ENDPOINT/BUCKET/KEY
(path-style, which they all speak). Either URL is judged by the source policy
as any http source's is. The validator is the object's ETag. S3 does not
honour If-Range, so a resume asks for the range with If-Match: an object
changed since (412) is fetched whole instead, which is what If-Range would
have answered, so the fetchers start a new content version and never mix two.

Credentials: --s3-access-key-id/--s3-secret-access-key, else
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), else the
shared credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials,
profile --s3-profile or AWS_PROFILE or "default"); none: unsigned (a public
bucket). A 403 is told as a denial, with S3's error code, never the secret.
"""
import configparser
import datetime
import os
import re
import urllib.error
from typing import Dict, Mapping, NamedTuple, Optional
from urllib.parse import quote, unquote, urlsplit

from dfly.errors import SourceError
from dfly.protocol.sigv4 import EMPTY_SHA256, authorization
from dfly.sources import http
from dfly.sources.config import SourceOptions


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str = ""


def open_url(url: str, headers: Dict[str, str], timeout_s: float, policy,
             options: SourceOptions, environ: Optional[Mapping[str, str]] = None,
             now: Optional[datetime.datetime] = None):
    parts = urlsplit(url)
    bucket, key = parts.netloc, unquote(parts.path.lstrip("/"))
    if not bucket or not key:
        raise SourceError("an s3 URL is s3://BUCKET/KEY: %s" % url[:200])
    target = object_url(bucket, key, options)
    asked = dict(headers)
    match = asked.pop("If-Range", None)
    if match is not None and "Range" in asked:
        asked["If-Match"] = match
    creds = find_credentials(options, os.environ if environ is None else environ)
    try:
        return _get(url, target, asked, timeout_s, policy, options, creds, now)
    except urllib.error.HTTPError as e:
        if e.code != 412 or "If-Match" not in asked:
            raise
        e.close()   # changed since the range's version: the whole object, as If-Range would
        del asked["If-Match"], asked["Range"]
        return _get(url, target, asked, timeout_s, policy, options, creds, now)


def object_url(bucket: str, key: str, options: SourceOptions) -> str:
    path = quote(key, safe="/~")
    if options.s3_endpoint:
        return "%s/%s/%s" % (options.s3_endpoint.rstrip("/"), bucket, path)
    return "https://%s.s3.%s.amazonaws.com/%s" % (bucket, options.s3_region, path)


def find_credentials(options: SourceOptions, environ: Mapping[str, str]) -> Optional[Credentials]:
    if options.s3_access_key_id and options.s3_secret_access_key:
        return Credentials(options.s3_access_key_id, options.s3_secret_access_key)
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        return Credentials(environ["AWS_ACCESS_KEY_ID"], environ["AWS_SECRET_ACCESS_KEY"],
                           environ.get("AWS_SESSION_TOKEN", ""))
    path = environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".aws", "credentials")
    profile = options.s3_profile or environ.get("AWS_PROFILE") or "default"
    parser = configparser.RawConfigParser()
    try:
        parser.read(path)
    except (configparser.Error, OSError, UnicodeDecodeError) as e:
        raise SourceError("cannot read the AWS credentials file %s: %s" % (path, type(e).__name__))
    if parser.has_option(profile, "aws_access_key_id") and \
            parser.has_option(profile, "aws_secret_access_key"):
        return Credentials(parser.get(profile, "aws_access_key_id").strip(),
                           parser.get(profile, "aws_secret_access_key").strip(),
                           parser.get(profile, "aws_session_token", fallback="").strip())
    return None


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


def _get(url: str, target: str, headers: Dict[str, str], timeout_s: float, policy,
         options: SourceOptions, creds: Optional[Credentials], now):
    when = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        return http.open_url(target, signed_headers(target, headers, creds, options.s3_region, when),
                             timeout_s, policy, options)
    except urllib.error.HTTPError as e:
        if e.code != 403:
            raise
        code = _error_code(e)
        e.close()
        raise SourceError("S3 denied access to %s (%s): check the credentials and the "
                          "bucket's policy" % (url.split("?")[0], code or "403 Forbidden"))


def _error_code(e: urllib.error.HTTPError) -> str:
    try:
        body = e.read(4096).decode("utf-8", "replace")
    except Exception:   # the body is only for the message
        return ""
    m = re.search(r"<Code>([A-Za-z]{1,60})</Code>", body)
    return m.group(1) if m else ""
