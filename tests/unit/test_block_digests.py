"""Block digests (protocol v3: the sha256 of the piece up to each block's end): how
pieces are cut into blocks, what an order's block list must look like, and the
version check both sides make."""
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfly.errors import BadRequest, VersionMismatch
from dfly.protocol.messages import PROTOCOL_VERSION, PieceOrder, RegisterRequest, check_version
from dfly.protocol.pieces import (
    BLOCK_SIZE,
    MAX_BLOCKS,
    MIN_BLOCK_SIZE,
    PrefixHasher,
    block_digests,
    block_size_for,
    block_spans,
)

MiB = 1 << 20


def test_blocks_are_a_sixteenth_of_a_piece_within_64_to_256_kib_until_a_piece_would_have_more_than_64():
    assert block_size_for(1 * MiB) == MIN_BLOCK_SIZE == 64 * 1024   # a relay's lag: 16 blocks, not 4
    assert block_size_for(2 * MiB) == 128 * 1024
    assert block_size_for(4 * MiB) == BLOCK_SIZE == 256 * 1024     # 1 GiB files: as before
    assert block_size_for(16 * MiB) == BLOCK_SIZE
    assert block_size_for(64 * MiB) == MiB
    assert 64 * MiB // block_size_for(64 * MiB) == MAX_BLOCKS
    assert block_size_for(100 * 1024) == MIN_BLOCK_SIZE


def test_a_short_last_piece_has_a_short_last_block():
    assert block_spans(600 * 1024, 256 * 1024) == [(0, 262144), (262144, 262144), (524288, 90112)]
    assert block_spans(256 * 1024, 256 * 1024) == [(0, 262144)]


def test_a_blocks_digest_is_the_sha256_of_the_piece_up_to_its_end():
    data = bytes(range(256)) * 1500   # 384000 bytes: two blocks of 256 KiB and a tail
    assert block_digests(data, 256 * 1024) == [hashlib.sha256(data[:262144]).hexdigest(),
                                               hashlib.sha256(data).hexdigest()]
    assert block_digests(data[:262144], 256 * 1024) == [hashlib.sha256(data[:262144]).hexdigest()]
    assert block_digests(b"", 256 * 1024) == []


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.lists(st.integers(1, 700), max_size=12),
       st.integers(1, 900))
def test_the_prefix_hasher_gives_the_same_digests_however_the_bytes_are_split(data, cuts, block):
    hasher = PrefixHasher(block)
    at = 0
    for n in cuts:
        hasher.feed(data[at:at + n])
        at += n
    hasher.feed(data[at:])
    assert hasher.done() == [hashlib.sha256(data[:end]).hexdigest()
                             for end in range(block, len(data), block)] + [hashlib.sha256(data).hexdigest()]
    hasher.feed(data[:1])   # it starts the next piece
    assert hasher.done() == [hashlib.sha256(data[:1]).hexdigest()]


def _order(**fields):
    item = {"num": 0, "start": 0, "size": 600 * 1024, "sha256": "a" * 64, "holder": "h"}
    item.update(fields)
    return item


def test_an_order_carries_one_digest_per_block_or_none():
    order = PieceOrder.parse(_order(block_size=256 * 1024, blocks=["b" * 64, "c" * 64, "d" * 64]))
    assert order.block_size == 256 * 1024 and order.blocks == ("b" * 64, "c" * 64, "d" * 64)
    assert PieceOrder.parse(order.to_json()) == order
    bare = PieceOrder.parse(_order())
    assert bare.blocks == () and bare.block_size == 0


@pytest.mark.parametrize("fields", [
    {"block_size": 256 * 1024, "blocks": ["b" * 64, "c" * 64]},            # one short
    {"block_size": 256 * 1024, "blocks": ["b" * 64] * 4},                  # one too many
    {"block_size": 256 * 1024, "blocks": ["B" * 64, "c" * 64, "d" * 64]},  # not lowercase hex
    {"block_size": 0, "blocks": ["b" * 64]},                               # no size
    {"blocks": ["b" * 64, "c" * 64, "d" * 64]},                            # size missing
    {"block_size": 256 * 1024, "blocks": "b" * 192},                       # not a list
])
def test_an_order_with_a_block_list_that_does_not_fit_the_piece_is_refused(fields):
    with pytest.raises(BadRequest):
        PieceOrder.parse(_order(**fields))


def _register(**extra):
    body = {"url": "http://origin.example/f", "peer": {"id": "p1", "port": 4000}}
    body.update(extra)
    return body


def test_a_version_1_peer_is_refused_with_both_versions_named():
    with pytest.raises(VersionMismatch):
        RegisterRequest.parse(_register(version=2))
    with pytest.raises(VersionMismatch) as caught:
        RegisterRequest.parse(_register(version=1))
    assert str(caught.value) == ("the peer speaks dfly protocol version 1, this supernode speaks "
                                 "version 3: upgrade the older one")
    assert RegisterRequest.parse(_register(version=PROTOCOL_VERSION)).peer_id == "p1"
    assert RegisterRequest.parse(_register()).peer_id == "p1"   # a hand-written call
    assert RegisterRequest("http://o/f", "p1", 4000).to_json()["version"] == PROTOCOL_VERSION == 3


def test_a_reply_without_a_version_is_from_a_version_1_supernode():
    with pytest.raises(VersionMismatch) as caught:
        check_version(None, "supernode 127.0.0.1:8002")
    assert "supernode 127.0.0.1:8002 speaks dfly protocol version 1, this peer speaks version 3" \
        in str(caught.value)
    with pytest.raises(VersionMismatch):   # a version-2 supernode's blocks are not prefixes
        check_version(2, "supernode x")
    with pytest.raises(VersionMismatch):
        check_version(4, "supernode x")
    check_version(3, "supernode x")


def test_a_replicas_block_lists_are_kept_only_when_they_end_with_their_piece_digest():
    from dfly.supernode.task import blocks_of
    piece = bytes(range(256)) * 2048   # 512 KiB: two blocks
    prefixes = block_digests(piece, 256 * 1024)
    alone = [hashlib.sha256(piece[:262144]).hexdigest(), hashlib.sha256(piece[262144:]).hexdigest()]
    digest = hashlib.sha256(piece).hexdigest()
    copy = {"digests": [digest, digest, digest], "blocks": [prefixes, alone, ["x" * 64]]}
    assert blocks_of(copy) == {0: prefixes}   # a version-2 member's list, and a malformed one: out
