"""A heartbeat reply's `check` list, and which failure reasons cast doubt on a copy."""
from dfly.protocol.messages import PieceCheck, copy_suspect

HEX = "ab" * 32


def test_well_formed_checks_are_parsed():
    reply = {"ok": True, "check": [{"num": 3, "sha256": HEX}, {"num": 0, "sha256": "cd" * 32}]}
    assert PieceCheck.parse_all(reply) == [PieceCheck(3, HEX), PieceCheck(0, "cd" * 32)]


def test_a_reply_without_checks_has_none():
    assert PieceCheck.parse_all({"ok": True}) == []
    assert PieceCheck.parse_all({"ok": True, "check": None}) == []
    assert PieceCheck.parse_all("not an object") == []


def test_malformed_checks_are_skipped_not_fatal():
    reply = {"check": [{"num": -1, "sha256": HEX}, {"num": True, "sha256": HEX}, {"num": "1", "sha256": HEX},
                       {"num": 1, "sha256": "AB" * 32}, {"num": 1, "sha256": "ab"}, "x", None,
                       {"num": 2, "sha256": HEX}]}
    assert PieceCheck.parse_all(reply) == [PieceCheck(2, HEX)]
    assert PieceCheck.parse_all({"check": "all"}) == []


def test_only_a_mismatch_or_a_short_piece_casts_doubt_on_the_holder_copy():
    assert copy_suspect("digest mismatch")
    assert copy_suspect("short piece: 10 of 1048576 bytes")
    assert not copy_suspect("unreachable: connection refused")
    assert not copy_suspect("transfer broke: timed out")
    assert not copy_suspect("holder answered 404")
    assert not copy_suspect("")
