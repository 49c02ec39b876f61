"""AWS Signature Version 4 for one request, with hmac/hashlib only. Pure: the
request's parts and the time in, the Authorization header out.

The string to sign binds the method, the path, the query, the signed headers
and the payload's hash to a day, a region and a service, through a key derived
from the secret by four HMACs (date, region, service, "aws4_request"), so a
signature is useless for any other request or day. S3 encodes each path
segment once (other services twice); dfly only signs S3 GETs, but the test
vectors for other services (get-vanilla) pin the same code.
"""
import hashlib
import hmac
from typing import Dict, Sequence, Tuple
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def canonical_request(method: str, path: str, query: Sequence[Tuple[str, str]],
                      headers: Dict[str, str], payload_sha256: str) -> Tuple[str, str]:
    """(the canonical request text, the signed header names joined by ';')."""
    names = sorted(headers, key=str.lower)
    lines = ["%s:%s" % (n.lower(), " ".join(str(headers[n]).split())) for n in names]
    signed = ";".join(n.lower() for n in names)
    pairs = sorted((_encode(k), _encode(v)) for k, v in query)
    text = "\n".join([method, quote(path or "/", safe="/~"),
                      "&".join("%s=%s" % kv for kv in pairs),
                      "\n".join(lines) + "\n", signed, payload_sha256])
    return text, signed


def authorization(method: str, path: str, query: Sequence[Tuple[str, str]],
                  headers: Dict[str, str], payload_sha256: str, access_key: str,
                  secret_key: str, region: str, service: str, amz_date: str) -> str:
    """The Authorization header for a request whose `headers` (Host and
    X-Amz-Date among them) are all signed; `amz_date` is YYYYMMDDTHHMMSSZ."""
    request, signed = canonical_request(method, path, query, headers, payload_sha256)
    scope = "%s/%s/%s/aws4_request" % (amz_date[:8], region, service)
    to_sign = "\n".join([ALGORITHM, amz_date, scope,
                         hashlib.sha256(request.encode("utf-8")).hexdigest()])
    key = ("AWS4" + secret_key).encode("utf-8")
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return "%s Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        ALGORITHM, access_key, scope, signed, signature)


def _encode(text: str) -> str:
    return quote(text, safe="~")
