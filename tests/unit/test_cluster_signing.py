"""Signed requests between supernodes: what a signature covers, how long it
holds, and that the nonces remembered against replay stay bounded."""
import pytest

from dfly.errors import Forbidden
from dfly.protocol.signing import WINDOW_S, Verifier, cluster_key, sign

MEMBERS = ["10.0.0.1:8002", "10.0.0.2:8002"]
KEY = cluster_key("s" * 32, MEMBERS)
BODY = b'{"member": "10.0.0.2:8002", "active": []}'


def _header(now=1000.0, nonce="ab" * 8, member=MEMBERS[1], key=KEY, method="POST",
            path="/v1/cluster/ping", body=BODY):
    return sign(key, member, method, path, body, now, nonce)


def test_a_signed_request_names_its_member():
    assert Verifier(KEY, MEMBERS).verify(_header(), "POST", "/v1/cluster/ping", BODY, 1000.0) == MEMBERS[1]


def test_the_same_request_twice_is_a_replay():
    verifier = Verifier(KEY, MEMBERS)
    verifier.verify(_header(), "POST", "/v1/cluster/ping", BODY, 1000.0)
    with pytest.raises(Forbidden, match="replayed"):
        verifier.verify(_header(), "POST", "/v1/cluster/ping", BODY, 1001.0)


@pytest.mark.parametrize("now", [1000.0 + WINDOW_S + 1, 1000.0 - WINDOW_S - 1])
def test_a_signature_holds_only_within_the_window(now):
    with pytest.raises(Forbidden, match="clock"):
        Verifier(KEY, MEMBERS).verify(_header(), "POST", "/v1/cluster/ping", BODY, now)


@pytest.mark.parametrize("method, path, body", [
    ("PUT", "/v1/cluster/ping", BODY),
    ("POST", "/v1/cluster/tasks/" + "f" * 64, BODY),
    ("POST", "/v1/cluster/ping", BODY + b" "),
])
def test_a_signature_covers_method_path_and_body(method, path, body):
    with pytest.raises(Forbidden):
        Verifier(KEY, MEMBERS).verify(_header(), method, path, body, 1000.0)


@pytest.mark.parametrize("header", [
    None, "", "v1", _header().replace("v1 ", "v2 "), _header()[:-1],
    _header(key=cluster_key("s" * 32, MEMBERS + ["10.0.0.3:8002"])),   # another member list
    _header(key=cluster_key("t" * 32, MEMBERS)),                        # another secret
    _header(member="10.0.0.9:8002"),                                    # not a member
])
def test_anything_else_is_not_a_member(header):
    with pytest.raises(Forbidden):
        Verifier(KEY, MEMBERS).verify(header, "POST", "/v1/cluster/ping", BODY, 1000.0)


def test_nonces_are_forgotten_once_their_time_is_out_and_never_exceed_the_bound():
    verifier = Verifier(KEY, MEMBERS, max_nonces=4)
    for i in range(4):
        verifier.verify(_header(nonce="%016x" % i), "POST", "/v1/cluster/ping", BODY, 1000.0)
    with pytest.raises(Forbidden, match="too many"):
        verifier.verify(_header(nonce="%016x" % 9), "POST", "/v1/cluster/ping", BODY, 1000.0)
    later = 1000.0 + WINDOW_S + 1
    verifier.verify(_header(now=later, nonce="%016x" % 9), "POST", "/v1/cluster/ping", BODY, later)
    assert len(verifier._seen) == 1


def test_a_verifier_holding_several_keys_takes_a_signature_under_any_and_no_other():
    # The gossip key ring's schedulers: one secret per key, so a key roll never splits them.
    from dfly.gossip.cluster import cluster_secret, cluster_secrets
    from dfly.gossip.wire import Keyring
    ring = Keyring([b"n" * 32, b"o" * 32])
    assert cluster_secrets(ring)[0] == cluster_secret(ring) != cluster_secrets(ring)[1]
    verifier = Verifier(cluster_key(cluster_secret(Keyring([b"o" * 32])), []), MEMBERS)
    verifier.keys = [cluster_key(s, []) for s in cluster_secrets(ring)]
    for i, secret in enumerate(cluster_secrets(ring)):
        header = _header(nonce="%02d" % i * 8, key=cluster_key(secret, []))
        assert verifier.verify(header, "POST", "/v1/cluster/ping", BODY, 1000.0) == MEMBERS[1]
    stranger = _header(nonce="cd" * 8, key=cluster_key("x" * 32, []))
    with pytest.raises(Forbidden, match="bad signature"):
        verifier.verify(stranger, "POST", "/v1/cluster/ping", BODY, 1000.0)
