"""Fallback by piece: when P2P cannot deliver some pieces, only those come from
the source (by Range), and the result's byte counts add up to the file."""
import os

import pytest
from helpers import MiB, content, sha256_file, wait_until

from dfly.protocol.pieces import block_size_for
from dfly.protocol.task import task_id

PIECE = MiB   # the piece size of the small files here


def _peer_requests(origin, name):
    """What the origin served to the downloading client itself (not to the supernode)."""
    return [s for s in origin.served(name) if s.headers.get("User-Agent", "").startswith("dfly/")]


def _adds_up(result):
    return result.bytes_from_source + result.bytes_from_supernode + result.bytes_from_peers \
        == result.length


@pytest.mark.time_limit(60)
def test_a_piece_bad_at_its_only_holder_costs_the_origin_one_piece_and_the_summary_adds_up(
        origin, supernode, sn_client, client_factory, downloads, tmp_path):
    """The supernode repairs its copy, or the get fetches that piece by Range
    itself: either way one piece, not a copy of the file, and the bad bytes the
    get received are shown apart."""
    size = 8 * MiB
    src = origin.add("rot.bin", content(size, seed=41))
    first = client_factory([supernode.address]).download(src.url, str(downloads / "first"))
    assert first.bytes_from_supernode == size
    tid = task_id(src.url)
    wait_until(lambda: sn_client.task(tid)["state"] == "done", timeout=10)
    cached = os.path.join(str(tmp_path / "supernode"), "tasks", tid, "data")
    with open(cached, "r+b") as f:   # the supernode's disk rots under piece 3
        f.seek(3 * PIECE + 100)
        byte = f.read(1)
        f.seek(3 * PIECE + 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    served_before = origin.body_bytes("rot.bin")

    result = client_factory([supernode.address]).download(src.url, str(downloads / "second"))

    assert sha256_file(str(downloads / "second")) == src.sha256
    assert _adds_up(result), result
    # The bad copies it got, shown apart: each caught at its bad block (the first of
    # the piece's blocks here), not a whole piece later.
    assert result.bytes_discarded >= block_size_for(PIECE), result
    mine = _peer_requests(origin, "rot.bin")   # never the whole file again
    assert all(s.status == 206 for s in mine), mine
    assert sum(s.body_bytes for s in mine) == result.bytes_from_source <= PIECE
    assert origin.body_bytes("rot.bin") - served_before <= PIECE


@pytest.mark.time_limit(60)
def test_a_download_that_falls_back_whole_counts_what_it_replaced_as_discarded(
        origin, supernode, sn_client, client_factory, downloads, tmp_path):
    size = 8 * MiB
    src = origin.add("rot.bin", content(size, seed=42))
    origin.fault("rot.bin", no_ranges=True)
    client_factory([supernode.address]).download(src.url, str(downloads / "first"))
    tid = task_id(src.url)
    wait_until(lambda: sn_client.task(tid)["state"] == "done", timeout=10)
    cached = os.path.join(str(tmp_path / "supernode"), "tasks", tid, "data")
    with open(cached, "r+b") as f:
        f.seek(5 * PIECE)
        f.write(b"\0" * 16)

    result = client_factory([supernode.address]).download(src.url, str(downloads / "second"))

    assert sha256_file(str(downloads / "second")) == src.sha256
    assert _adds_up(result), result
    if result.bytes_from_source:   # the source was needed: all of it, and P2P's bytes set aside
        assert result.bytes_from_source == size
        assert result.bytes_discarded >= size - PIECE
        assert result.via == "source"

