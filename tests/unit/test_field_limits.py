"""Limits at their exact edges, in the wire formats and pure rules (the boundary
mutants a mutation run left alive, docs/TESTING.md): the largest value allowed
is allowed, one more is not."""
import json

import pytest

from dfly.errors import BadRequest
from dfly.protocol import bearer, oci
from dfly.protocol.messages import (
    PROTOCOL_VERSION,
    HeartbeatReply,
    RegisterRequest,
    TaskState,
    content_version_of,
)
from dfly.protocol.ranges import parse_range
from dfly.protocol.ratelimit import TokenBucket


def register_body(**headers):
    return {"url": "http://origin/f", "peer": {"id": "p1", "port": 9000}, "headers": headers}


def test_a_header_name_of_256_characters_is_allowed_and_of_257_refused():
    assert len(RegisterRequest.parse(register_body(**{"X" * 256: "v"})).headers) == 1
    with pytest.raises(BadRequest):
        RegisterRequest.parse(register_body(**{"X" * 257: "v"}))


def test_a_register_request_names_its_protocol_version():
    req = RegisterRequest.parse(register_body())
    assert req.to_json()["version"] == PROTOCOL_VERSION


def test_a_content_version_of_64_characters_is_kept_and_a_longer_one_dropped():
    assert content_version_of({"content_version": "v" * 64}) == "v" * 64
    assert content_version_of({"content_version": "v" * 65}) == ""


@pytest.mark.parametrize("waited, got", [(0, 0.0), (999999.5, 999999.5), (1e6, None), (-1, None)])
def test_waited_s_is_kept_from_zero_up_to_a_million_seconds(waited, got):
    assert TaskState.parse({"state": "running", "waited_s": waited}).waited_s == got


def test_a_token_reply_of_exactly_the_size_limit_is_read():
    body = json.dumps({"token": "t"}).encode()
    body += b" " * (bearer.MAX_TOKEN_BYTES - len(body))
    assert bearer.parse_token_reply(body) == ("t", float(bearer.DEFAULT_EXPIRES_IN_S))
    assert bearer.parse_token_reply(body + b" ") is None


@pytest.mark.parametrize("expires, got", [(1, 1.0), (0, None), (-5, None)])
def test_a_token_lifetime_must_be_positive_else_the_default_applies(expires, got):
    reply = json.dumps({"token": "XYZ", "expires_in": expires}).encode()
    assert bearer.parse_token_reply(reply) == ("XYZ", got or float(bearer.DEFAULT_EXPIRES_IN_S))


def test_a_realm_without_a_host_is_no_challenge():
    assert bearer.parse_challenge('Bearer realm="https:///token",service="reg"') is None
    assert bearer.parse_challenge('Bearer service="reg"') is None


def test_range_bounds_of_19_digits_are_read():
    assert parse_range("bytes=0-" + "9" * 19, 100) == (0, 99)
    assert parse_range("bytes=" + "9" * 19 + "-", 10 ** 20) == (10 ** 19 - 1, 10 ** 20 - 1)


def test_a_rate_of_one_byte_per_second_is_a_limit():
    bucket = TokenBucket(1, 0.0)
    assert bucket.reserve(5, 0.0) > 0


def test_a_repository_name_of_the_maximum_length_is_allowed():
    name = "a" * oci.MAX_NAME_LEN
    assert oci.parse_path("/v2/%s/blobs/sha256:%s" % (name, "0" * 64)).name == name
    with pytest.raises(oci.BadName):
        oci.parse_path("/v2/%s/blobs/sha256:%s" % (name + "a", "0" * 64))


@pytest.mark.parametrize("validator, got", [('"' + "e" * 510 + '"', '"' + "e" * 510 + '"'),
                                            ("e" * 513, ""), ('"a"\r\nX: y', ""), ('"a\0"', "")])
def test_a_validator_is_one_header_line_of_at_most_512_characters(validator, got):
    assert TaskState.parse({"state": "done", "validator": validator}).validator == got


def test_a_heartbeat_reply_carries_the_content_version_and_the_pieces_to_check():
    digest = "ab" * 32
    reply = HeartbeatReply.parse({"content_version": "v7", "check": [{"num": 3, "sha256": digest}]})
    assert reply.content_version == "v7"
    assert [(c.num, c.sha256) for c in reply.checks] == [(3, digest)]
