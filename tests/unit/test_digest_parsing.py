"""Digest parsing is strict: a typo is a usage error, not a mismatch after the download."""
import hashlib

import pytest

from dfly.protocol.digest import format_digest, new_hasher, parse_digest

SHA256_EMPTY = hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("algorithm, hexdigest", [
    ("sha256", SHA256_EMPTY),
    ("sha512", hashlib.sha512(b"").hexdigest()),
    ("md5", hashlib.md5(b"").hexdigest()),
])
def test_each_supported_algorithm_parses(algorithm, hexdigest):
    assert parse_digest("%s:%s" % (algorithm, hexdigest)) == (algorithm, hexdigest)


def test_upper_case_and_surrounding_space_are_normalised():
    assert parse_digest("  SHA256:%s\n" % SHA256_EMPTY.upper()) == ("sha256", SHA256_EMPTY)


@pytest.mark.parametrize("text", [
    "",
    "sha256:",
    SHA256_EMPTY,                                   # no algorithm
    "sha256" + SHA256_EMPTY,                        # no colon
    "sha256:" + SHA256_EMPTY[:-1],                  # one digit short
    "sha256:" + SHA256_EMPTY + "0",                 # one digit long
    "sha256:" + SHA256_EMPTY[:-1] + "g",            # not hex
    "sha256: " + SHA256_EMPTY,                      # space inside
    "sha256::" + SHA256_EMPTY,
    "sha1:" + hashlib.sha1(b"").hexdigest(),        # unsupported algorithm
    "sha512:" + SHA256_EMPTY,                       # length of another algorithm
    "md5:" + SHA256_EMPTY,
    "sha256:" + SHA256_EMPTY + "\nsha256:" + SHA256_EMPTY,
])
def test_malformed_digests_are_refused_with_the_expected_form(text):
    with pytest.raises(ValueError, match="sha256:<64 hex digits>"):
        parse_digest(text)


def test_new_hasher_uses_the_named_algorithm():
    hasher = new_hasher("md5:" + hashlib.md5(b"").hexdigest())
    hasher.update(b"abc")
    assert hasher.hexdigest() == hashlib.md5(b"abc").hexdigest()


def test_new_hasher_refuses_a_malformed_digest():
    with pytest.raises(ValueError):
        new_hasher("sha256:abc")


def test_format_digest_is_the_inverse_of_parse_digest():
    assert format_digest("sha256", SHA256_EMPTY) == "sha256:" + SHA256_EMPTY
    assert parse_digest(format_digest("sha256", SHA256_EMPTY)) == ("sha256", SHA256_EMPTY)
