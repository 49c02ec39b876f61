"""The SigV4 signer pinned by AWS's published examples (no server needed)."""
import pytest

from dfly.protocol.sigv4 import EMPTY_SHA256, authorization

EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_signer_matches_the_s3_documentation_example_get_with_range():
    # "Example: GET Object" of the S3 SigV4 header-based auth page.
    headers = {"Host": "examplebucket.s3.amazonaws.com", "Range": "bytes=0-9",
               "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": "20130524T000000Z"}
    got = authorization("GET", "/test.txt", [], headers, EMPTY_SHA256, "AKIAIOSFODNN7EXAMPLE",
                        EXAMPLE_SECRET, "us-east-1", "s3", "20130524T000000Z")
    assert got == ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                   "aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                   "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


@pytest.mark.parametrize("path", ["/", ""])   # an empty path is signed as the root
def test_signer_matches_the_sigv4_test_suite_get_vanilla(path):
    headers = {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"}
    got = authorization("GET", path, [], headers, EMPTY_SHA256, "AKIDEXAMPLE",
                        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1", "service",
                        "20150830T123600Z")
    assert got.endswith("SignedHeaders=host;x-amz-date, Signature="
                        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")


def test_a_changed_secret_changes_the_signature():
    headers = {"Host": "h", "X-Amz-Date": "20150830T123600Z"}
    one = authorization("GET", "/k", [], headers, EMPTY_SHA256, "A", "s1", "r", "s3",
                        "20150830T123600Z")
    two = authorization("GET", "/k", [], headers, EMPTY_SHA256, "A", "s2", "r", "s3",
                        "20150830T123600Z")
    assert one != two


def test_signer_agrees_with_botocore_on_a_query_mixed_case_headers_and_a_tilde_in_the_path():
    """botocore (moto's client library, in requirements-test.txt) signs the same
    S3 GET; ours must match byte for byte: the query sorted and encoded, headers
    sorted by their lower-case names, a path's `~` and `/` kept, a space encoded."""
    botocore = pytest.importorskip("botocore")
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    assert botocore
    request = AWSRequest(method="GET", headers={"x-meta": "1", "X-Zeta": "  two   spaces "},
                         url="https://bucket.s3.example.com/a~b/c%20d.bin?list-type=2&Prefix=x%2Fy")
    S3SigV4Auth(Credentials("AKID", "SECRET"), "s3", "eu-west-1").add_auth(request)
    headers = {k: v for k, v in request.headers.items() if k != "Authorization"}
    headers["Host"] = "bucket.s3.example.com"
    ours = authorization("GET", "/a~b/c d.bin", [("list-type", "2"), ("Prefix", "x/y")], headers,
                         request.headers["X-Amz-Content-SHA256"], "AKID", "SECRET", "eu-west-1", "s3",
                         request.headers["X-Amz-Date"])
    assert ours == request.headers["Authorization"]
