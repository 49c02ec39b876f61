"""The gossip packet: only a key holder's fresh, first-seen packets are taken."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfly.gossip.wire import MAX_PACKET_BYTES, REPLAY_WINDOW, Dropped, Keyring, Opener, Sealer

KEY, OTHER, NEW = b"k" * 32, b"o" * 32, b"n" * 32
NOW = 1_800_000_000.0


def _pair(sign=(KEY,), verify=(KEY,)):
    return Sealer(Keyring(list(sign)), NOW), Opener(Keyring(list(verify)))


def _refused(opener, packet, now=NOW):
    with pytest.raises(Dropped) as e:
        opener.open(packet, now)
    return e.value.reason


def test_a_sealed_packet_opens_to_the_same_message():
    sealer, opener = _pair()
    msg = {"t": "ping", "from": "a", "seq": 7, "u": []}
    assert opener.open(sealer.seal(msg, NOW), NOW) == msg


def test_a_packet_under_another_cluster_key_is_refused_and_counted():
    sealer, opener = _pair(sign=(OTHER,))
    assert _refused(opener, sealer.seal({"from": "a"}, NOW)) == "unknown_key"
    assert opener.dropped == {"unknown_key": 1}


def test_a_changed_byte_anywhere_is_a_forgery():
    sealer, opener = _pair()
    packet = sealer.seal({"from": "a", "t": "ack", "seq": 1}, NOW)
    for i in (3 + 4 + 2, len(packet) // 2, len(packet) - 1):   # time, body, tag
        bad = bytearray(packet)
        bad[i] ^= 1
        assert _refused(opener, bytes(bad)) == "forged", i


def test_a_replayed_packet_is_dropped_but_the_next_one_is_taken():
    sealer, opener = _pair()
    first = sealer.seal({"from": "a"}, NOW)
    opener.open(first, NOW)
    assert _refused(opener, first) == "replayed"
    opener.open(sealer.seal({"from": "a"}, NOW), NOW)


def test_packets_out_of_order_within_the_window_are_taken_once_each():
    sealer, opener = _pair()
    packets = [sealer.seal({"from": "a", "n": i}, NOW) for i in range(5)]
    for p in reversed(packets):
        opener.open(p, NOW)
    assert all(_refused(opener, p) == "replayed" for p in packets)


def test_a_packet_older_than_the_replay_window_is_dropped():
    sealer, opener = _pair()
    old = sealer.seal({"from": "a"}, NOW)
    for _ in range(REPLAY_WINDOW + 1):
        opener.open(sealer.seal({"from": "a"}, NOW), NOW)
    assert _refused(opener, old) == "replayed"


def test_stale_and_future_packets_are_dropped():
    sealer, opener = _pair()
    assert _refused(opener, sealer.seal({"from": "a"}, NOW - 31), NOW) == "stale"
    assert _refused(opener, sealer.seal({"from": "a"}, NOW + 31), NOW) == "stale"


def test_a_restarted_sender_is_not_taken_for_a_replayer():
    sealer, opener = _pair()
    opener.open(sealer.seal({"from": "a"}, NOW), NOW)
    restarted = Sealer(Keyring([KEY]), NOW + 1)
    opener.open(restarted.seal({"from": "a"}, NOW + 1), NOW + 1)


def test_keys_rotate_without_downtime():
    old_member = Sealer(Keyring([KEY]), NOW)
    rolling = Opener(Keyring([NEW, KEY]))         # new key first, old one still verifies
    rolling.open(old_member.seal({"from": "a"}, NOW), NOW)
    new_member = Sealer(Keyring([NEW, KEY]), NOW)
    assert Opener(Keyring([NEW])).open(new_member.seal({"from": "b"}, NOW), NOW) == {"from": "b"}


def test_short_keys_are_refused():
    with pytest.raises(ValueError):
        Keyring([b"short"])


def test_the_sender_table_is_bounded():
    sealer, opener = _pair()
    for i in range(4200):
        opener.open(sealer.seal({"from": "m%d" % i}, NOW), NOW)
    assert len(opener._seen) <= 4096


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_junk_is_refused_without_a_crash(data):
    _, opener = _pair()
    with pytest.raises(Dropped):
        opener.open(data, NOW)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_a_signed_body_that_is_not_a_message_is_malformed(body):
    import hashlib
    import hmac

    from dfly.gossip.wire import HEADER, MAGIC, key_id
    head = MAGIC + HEADER.pack(key_id(KEY), int(NOW * 1000), 1)
    packet = head + body + hmac.new(KEY, head + body, hashlib.sha256).digest()
    _, opener = _pair()
    try:
        msg = opener.open(packet, NOW)
    except Dropped as e:
        assert e.reason == "malformed"
    else:
        assert isinstance(msg, dict) and isinstance(msg["from"], str)


def test_an_oversized_packet_is_refused_before_hashing():
    _, opener = _pair()
    assert _refused(opener, b"DG1" + b"\0" * MAX_PACKET_BYTES) == "malformed"
