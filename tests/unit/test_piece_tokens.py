"""Piece-access tokens (protocol/piecetoken.py): what opens a holder's pieces and what not."""
import hashlib
import hmac

from dfly.protocol import piecetoken

KEY = piecetoken.key_of("0123456789abcdef0123456789abcdef")
TID = "a" * 64
NOW = 1_700_000_000.0


def test_a_token_opens_its_task_for_its_requester_until_it_expires():
    token = piecetoken.mint(KEY, TID, "peer-r", NOW)
    assert piecetoken.refusal(token, [KEY], TID, "peer-r", NOW) is None
    assert piecetoken.refusal(token, [KEY], TID, "peer-r", NOW + piecetoken.TTL_S) is None


def test_no_token_or_a_malformed_one_is_refused():
    assert "no piece token" in piecetoken.refusal(None, [KEY], TID, "peer-r", NOW)
    assert "no piece token" in piecetoken.refusal("", [KEY], TID, "peer-r", NOW)
    for bad in ["v1", "v1.x.y", "v2.1.%s" % ("0" * 64), "v1.1.%s" % ("0" * 63),
                "v1.1.%s\n" % ("0" * 64), "v1.%s.%s" % ("9" * 13, "0" * 64)]:
        assert piecetoken.refusal(bad, [KEY], TID, "peer-r", NOW) == "malformed piece token"


def test_an_expired_token_is_refused_after_the_clock_skew_allowance():
    token = piecetoken.mint(KEY, TID, "peer-r", NOW, ttl_s=10)
    assert piecetoken.refusal(token, [KEY], TID, "peer-r", NOW + 10 + piecetoken.SKEW_S) is None
    assert piecetoken.refusal(token, [KEY], TID, "peer-r",
                              NOW + 11 + piecetoken.SKEW_S) == "piece token expired"


def test_a_token_for_another_task_requester_or_holder_is_refused():
    token = piecetoken.mint(KEY, TID, "peer-r", NOW)
    assert "not valid" in piecetoken.refusal(token, [KEY], "b" * 64, "peer-r", NOW)
    assert "not valid" in piecetoken.refusal(token, [KEY], TID, "peer-s", NOW)
    assert "not valid" in piecetoken.refusal(token, [piecetoken.key_of("other")], TID, "peer-r", NOW)
    assert "requester" in piecetoken.refusal(token, [KEY], TID, "", NOW)


def test_a_changed_expiry_breaks_the_signature():
    token = piecetoken.mint(KEY, TID, "peer-r", NOW)
    _, expiry, sig = token.split(".")
    longer = "v1.%d.%s" % (int(expiry) + 3600, sig)
    assert "not valid" in piecetoken.refusal(longer, [KEY], TID, "peer-r", NOW)


def test_a_holder_with_several_supernodes_secrets_accepts_a_token_of_any():
    other = piecetoken.key_of("secret of another supernode")
    token = piecetoken.mint(other, TID, "peer-r", NOW)
    assert piecetoken.refusal(token, [KEY, b"", other], TID, "peer-r", NOW) is None
    assert "not valid" in piecetoken.refusal(token, [], TID, "peer-r", NOW)


def test_a_token_is_the_one_protocol_md_documents():
    """A holder and a supernode of two releases must agree on every byte:
    v1.<expiry>.hex(HMAC-SHA256(key, "dfly-piece-v1\\n<task>\\n<requester>\\n<expiry>"))."""
    expiry = int(NOW) + 300
    message = "dfly-piece-v1\n%s\npeer-r\n%d" % (TID, expiry)
    sig = hmac.new(KEY, message.encode(), hashlib.sha256).hexdigest()
    assert piecetoken.mint(KEY, TID, "peer-r", NOW, ttl_s=300) == "v1.%d.%s" % (expiry, sig)
