"""Signed requests between supernodes: what a signature covers, how long it
holds, and that the nonces remembered against replay stay bounded."""
import hashlib
import hmac

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


# Built in the test, not at import: a key made once at collection would hide a
# change to cluster_key from the test (a mutation run found that).
@pytest.mark.parametrize("make", [
    lambda: None, lambda: "", lambda: "v1", lambda: _header().replace("v1 ", "v2 "),
    lambda: _header()[:-1],
    lambda: _header(key=cluster_key("s" * 32, MEMBERS + ["10.0.0.3:8002"])),   # another member list
    lambda: _header(key=cluster_key("t" * 32, MEMBERS)),                        # another secret
    lambda: _header(member="10.0.0.9:8002"),                                    # not a member
], ids=["none", "empty", "v1 alone", "v2", "cut", "another member list", "another secret",
        "not a member"])
def test_anything_else_is_not_a_member(make):
    with pytest.raises(Forbidden, match="not a member of this supernode cluster"):
        Verifier(cluster_key("s" * 32, MEMBERS), MEMBERS).verify(make(), "POST", "/v1/cluster/ping",
                                                                BODY, 1000.0)


def test_a_refusal_says_whether_the_header_was_missing_or_its_signature_wrong():
    verifier = Verifier(KEY, MEMBERS)
    with pytest.raises(Forbidden, match=r"\(no valid signature\)"):
        verifier.verify(None, "POST", "/v1/cluster/ping", BODY, 1000.0)
    with pytest.raises(Forbidden, match=r"\(bad signature\)"):
        verifier.verify(_header(key=cluster_key("t" * 32, MEMBERS)), "POST", "/v1/cluster/ping",
                        BODY, 1000.0)


def test_the_key_and_header_are_the_ones_protocol_md_documents():
    """Members of two releases must agree on every byte: key = HMAC-SHA256(secret,
    sorted members joined by ","); sig = HMAC-SHA256(key, METHOD, path, hex sha256
    of the body, ts, nonce and member, joined by newlines)."""
    members = ["10.0.0.2:8002", "10.0.0.1:8002", "[::1]:8002"]
    key = hmac.new(b"s" * 32, b"10.0.0.1:8002,10.0.0.2:8002,[::1]:8002", hashlib.sha256).digest()
    assert cluster_key("s" * 32, members) == key
    signed = "\n".join(["POST", "/v1/cluster/ping", hashlib.sha256(BODY).hexdigest(), "1000.250",
                         "ab" * 8, MEMBERS[1]])
    sig = hmac.new(key, signed.encode(), hashlib.sha256).hexdigest()
    assert sign(cluster_key("s" * 32, members), MEMBERS[1], "post", "/v1/cluster/ping", BODY,
                1000.25, "ab" * 8) == "v1 member=%s ts=1000.250 nonce=%s sig=%s" % (
                    MEMBERS[1], "ab" * 8, sig)


def test_each_member_list_and_each_secret_makes_another_key():
    keys = {cluster_key("s" * 32, MEMBERS), cluster_key("s" * 32, MEMBERS + ["10.0.0.3:8002"]),
            cluster_key("s" * 32, MEMBERS[:1]), cluster_key("t" * 32, MEMBERS)}
    assert len(keys) == 4
    assert cluster_key("s" * 32, MEMBERS) == cluster_key("s" * 32, MEMBERS[::-1])   # order is not part of it


@pytest.mark.parametrize("skew", [WINDOW_S, -WINDOW_S])
def test_a_signature_holds_up_to_the_window_itself(skew):
    assert Verifier(KEY, MEMBERS).verify(_header(), "POST", "/v1/cluster/ping", BODY,
                                         1000.0 + skew) == MEMBERS[1]


def test_a_signature_out_of_the_window_names_how_far_the_clocks_are_apart():
    with pytest.raises(Forbidden, match="signed 40s away from this member's clock"):
        Verifier(KEY, MEMBERS).verify(_header(), "POST", "/v1/cluster/ping", BODY, 1040.0)


def test_a_nonce_is_remembered_up_to_the_last_moment_its_signature_holds():
    verifier = Verifier(KEY, MEMBERS)
    verifier.verify(_header(), "POST", "/v1/cluster/ping", BODY, 1000.0)
    with pytest.raises(Forbidden, match="replayed"):   # a prune runs then, and keeps it
        verifier.verify(_header(), "POST", "/v1/cluster/ping", BODY, 1000.0 + WINDOW_S)


def test_a_full_nonce_store_drops_the_expired_ones_before_refusing():
    verifier = Verifier(KEY, MEMBERS, max_nonces=2)

    def call(now, nonce):
        return verifier.verify(_header(now=now, nonce=nonce), "POST", "/v1/cluster/ping", BODY, now)
    call(1000.0, "01" * 8)              # a prune is due every half window: 1015 next
    call(1020.0, "02" * 8)              # prunes (nothing out yet); 1035 next
    assert call(1032.0, "03" * 8) == MEMBERS[1]   # full, not due: the first nonce's time is out


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
