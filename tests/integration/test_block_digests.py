"""Block digests end to end: the supernode cuts them with the piece digests and
keeps them across a restart, peers are given them with each piece and check
every block as it arrives, and a peer and a supernode of different protocol
versions refuse each other with one clear error instead of exchanging pieces."""
import hashlib
import http.client
import json
import os

import pytest
from helpers import MiB, QuietHandler, Serving, content, leftovers, send_json, wait_until

from dfly.errors import VersionMismatch
from dfly.protocol.messages import RegisterRequest, ScheduleRequest
from dfly.protocol.pieces import block_digests, block_size_for
from dfly.supernode.client import SupernodeClient

BLOCK = block_size_for(MiB)   # the blocks of the 1 MiB pieces these files are cut in


def _orders(address, url, peer_id="p1"):
    """Every piece of `url` as a peer is given them (the supernode has them all). The
    peer then leaves: its orders, never fetched, would hold the supernode's upload
    slots from the get that follows until they time out (5 s)."""
    client = SupernodeClient(address, timeout_s=5)
    try:
        tid, state = client.register(RegisterRequest(url=url, peer_id=peer_id, peer_port=9,
                                                     peer_host="127.0.0.1"))
        wait_until(lambda: client.task(tid)["state"] == "done", timeout=10,
                   message="the supernode cached the source")
        pieces = client.schedule(tid, ScheduleRequest(peer_id, want=16)).pieces
        client.leave(tid, peer_id)
        return pieces
    finally:
        client.close()


def test_each_piece_is_given_with_the_digests_of_its_blocks_also_after_a_restart(
        origin, supernode_factory, tmp_path):
    data = content(2 * MiB + 300 * 1024, seed=71)   # two 1 MiB pieces and one of 300 KiB
    src = origin.add("blocks.bin", data)
    running = supernode_factory(data_dir=tmp_path / "sn")
    expected = {n: tuple(block_digests(data[n * MiB:(n + 1) * MiB], BLOCK)) for n in range(3)}

    orders = _orders(running.address, src.url)
    assert {o.num: o.blocks for o in orders} == expected
    assert {o.block_size for o in orders} == {BLOCK}
    assert [len(expected[n]) for n in range(3)] == [16, 16, 5]   # 64 KiB blocks

    running.stop()   # a new process: the digests come back from the disk (the source says 304)
    again = supernode_factory(data_dir=tmp_path / "sn")
    assert {o.num: o.blocks for o in _orders(again.address, src.url, "p2")} == expected
    assert origin.body_bytes("blocks.bin") == len(data)   # not cut again


def test_a_piece_cached_without_block_digests_is_given_without_them_and_still_downloads(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    data = content(2 * MiB, seed=72)
    src = origin.add("old.bin", data)
    running = supernode_factory(data_dir=tmp_path / "sn")
    _orders(running.address, src.url)
    running.stop()
    folders = [os.path.join(root) for root, _, files in os.walk(str(tmp_path / "sn")) if "blocks" in files]
    assert len(folders) == 1
    os.remove(os.path.join(folders[0], "blocks"))   # as a cache written by a version-1 supernode

    again = supernode_factory(data_dir=tmp_path / "sn")
    assert {o.blocks for o in _orders(again.address, src.url, "p2")} == {()}
    result = client_factory([again.address]).download(src.url, str(downloads / "old.bin"))
    assert result.via == "p2p" and open(str(downloads / "old.bin"), "rb").read() == data


def test_a_version_1_peer_gets_a_version_error_and_registers_nothing(origin, supernode, sn_client):
    src = origin.add("v1.bin", content(MiB, seed=73))
    body = json.dumps({"version": 1, "url": src.url, "peer": {"id": "old", "port": 9}})
    host, port = supernode.listener.address
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/v1/tasks", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        status, answer = response.status, json.loads(response.read())
    finally:
        conn.close()
    assert status == 400
    assert answer == {"kind": "VersionMismatch",
                      "error": "the peer speaks dfly protocol version 1, this supernode speaks "
                               "version 3: upgrade the older one"}
    assert sn_client.tasks() == [] and origin.requests("v1.bin") == 0


class Version1Supernode(Serving):
    """Answers a registration as a supernode of protocol version 1 did: no `version`."""

    def __init__(self, piece_sha256):
        self.registrations = 0
        fake = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.registrations += 1
                reply = {"state": "done", "length": MiB, "piece_size": MiB, "piece_count": 1,
                         "content_version": "v", "error": "", "error_kind": "", "pieces": [],
                         "task_id": "a" * 64, "peer_id": "p", "peer_secret": "b" * 32}
                send_json(self, reply)

        super().__init__(Handler, "v1-supernode")


def test_a_peer_refuses_a_version_1_supernode_and_writes_nothing(origin, client_factory, downloads):
    src = origin.add("v2.bin", content(MiB, seed=74))
    old = Version1Supernode(src.sha256)
    try:
        with pytest.raises(VersionMismatch) as caught:
            client_factory([old.address]).download(src.url, str(downloads / "v2.bin"))
    finally:
        old.stop()
    assert str(caught.value) == ("supernode %s speaks dfly protocol version 1, this peer speaks "
                                 "version 3: upgrade the older one" % old.address)
    assert old.registrations == 1
    assert os.listdir(str(downloads)) == [] and leftovers(str(downloads)) == []
    assert origin.requests("v2.bin") == 0   # not "fixed" by going to the source either


def _alone(piece):   # a version-2 supernode's: each block hashed alone
    return [hashlib.sha256(piece[at:at + BLOCK]).hexdigest() for at in range(0, MiB, BLOCK)]


def _of_256_kib(piece):   # before 2026-12-07: prefixes of 256 KiB blocks
    return block_digests(piece, 256 * 1024)


@pytest.mark.parametrize("cut", [_alone, _of_256_kib])
def test_block_digests_of_another_cut_are_not_given_with_the_piece(
        origin, supernode_factory, client_factory, downloads, tmp_path, cut):
    """A blocks file beside the right piece digest, yet of another cut, is not given
    with the piece: a cache a version-2 supernode cut has digests of each block alone
    (its last block's is not the piece's), and one cut before 2026-12-07 has four
    prefix digests of 256 KiB blocks per 1 MiB piece, that no order of today's
    64 KiB blocks can carry. Such a piece is offered without block digests and
    checked whole, not refused block by block."""
    data = content(2 * MiB, seed=72)
    src = origin.add("old.bin", data)
    running = supernode_factory(data_dir=tmp_path / "sn")
    _orders(running.address, src.url)
    running.stop()
    with open(_blocks_file(tmp_path / "sn"), "w") as f:
        for num in range(2):
            piece = data[num * MiB:(num + 1) * MiB]
            f.write("%d %s %s\n" % (num, hashlib.sha256(piece).hexdigest(), "".join(cut(piece))))
    again = supernode_factory(data_dir=tmp_path / "sn")
    assert {o.num: o.blocks for o in _orders(again.address, src.url, "p2")} == {0: (), 1: ()}
    result = client_factory([again.address]).download(src.url, str(downloads / "old.bin"))
    assert open(str(downloads / "old.bin"), "rb").read() == data and result.bytes_discarded == 0


def _blocks_file(data_dir):
    found = [os.path.join(root, "blocks") for root, _, files in os.walk(str(data_dir)) if "blocks" in files]
    assert len(found) == 1
    return found[0]


def test_block_digests_on_disk_beside_another_piece_digest_are_not_given_with_the_piece(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    """Peers take a piece whose blocks all verify without hashing it whole, so the
    blocks sent with a piece must be of its bytes: a line of the blocks file is
    bound to the piece digest it was cut with (here: a stale line of other bytes)."""
    data, other = content(2 * MiB, seed=73), content(MiB, seed=74)
    src = origin.add("stale.bin", data)
    running = supernode_factory(data_dir=tmp_path / "sn")
    _orders(running.address, src.url)
    running.stop()
    with open(_blocks_file(tmp_path / "sn"), "a") as f:   # last line wins: piece 1's, of other bytes
        f.write("1 %s %s\n" % (hashlib.sha256(other).hexdigest(), "".join(block_digests(other, BLOCK))))

    again = supernode_factory(data_dir=tmp_path / "sn")
    given = {o.num: o.blocks for o in _orders(again.address, src.url, "p2")}
    assert given == {0: tuple(block_digests(data[:MiB], BLOCK)), 1: ()}   # piece 1: checked whole
    result = client_factory([again.address]).download(src.url, str(downloads / "stale.bin"))
    assert open(str(downloads / "stale.bin"), "rb").read() == data and result.bytes_discarded == 0


@pytest.mark.time_limit(60)
def test_wrong_block_digests_on_the_supernode_are_caught_by_the_peer_and_cut_again(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    """Block digests of other bytes next to the right piece digest (a damaged blocks
    file): the peer refuses the supernode's good copy at block 0 and writes none of
    it; the supernode checks its copy against the piece digest and cuts the blocks
    afresh from those bytes, so the get ends with the right file and the next peer
    is given the right blocks."""
    data, right, folder = _cached_with_wrong_blocks(origin, supernode_factory, tmp_path, "wrong.bin")
    again = supernode_factory(data_dir=tmp_path / "sn")
    assert {o.num: o.blocks for o in _orders(again.address, origin.url("wrong.bin"), "p2")}[1] != right[1]
    result = client_factory([again.address]).download(origin.url("wrong.bin"), str(downloads / "wrong.bin"))
    assert open(str(downloads / "wrong.bin"), "rb").read() == data
    assert result.bytes_discarded >= BLOCK   # the bad block 0 was caught, nothing of it kept
    asked = iter(range(100))
    wait_until(lambda: {o.num: o.blocks for o in _orders(again.address, origin.url("wrong.bin"),
                                                         "p3-%d" % next(asked))} == right,
               timeout=20, message="the supernode cut piece 1's blocks again from its bytes")


@pytest.mark.time_limit(60)
def test_a_piece_fetched_again_gets_its_block_digests_cut_again_from_its_bytes(
        origin, supernode_factory, tmp_path):
    """The same damaged blocks file, and the piece's bytes damaged too: the scrub
    finds the piece bad and fetches it again, and its blocks are cut (and kept) from
    the bytes fetched."""
    data, right, folder = _cached_with_wrong_blocks(origin, supernode_factory, tmp_path, "both.bin")
    with open(os.path.join(folder, "data"), "r+b") as f:
        f.seek(MiB + 5)
        f.write(b"\xee")
    again = supernode_factory(data_dir=tmp_path / "sn")
    _orders(again.address, origin.url("both.bin"), "p2")   # the task is read back, and scrubbed
    client = SupernodeClient(again.address, timeout_s=5)
    try:
        wait_until(lambda: client.task(os.path.basename(folder)).get("repaired_pieces") == 1,
                   timeout=20, message="the scrub fetched piece 1 again")
    finally:
        client.close()
    again.stop()   # what it keeps on disk: the blocks cut from the bytes fetched again
    third = supernode_factory(data_dir=tmp_path / "sn")
    assert {o.num: o.blocks for o in _orders(third.address, origin.url("both.bin"), "p3")} == right


def _cached_with_wrong_blocks(origin, supernode_factory, tmp_path, name):
    """A supernode's cache of a 2 MiB file whose blocks file then gives piece 1 the
    blocks of other bytes beside its right piece digest, the last one that digest (a
    damage the supernode cannot see): (data, right blocks, folder)."""
    data, other = content(2 * MiB, seed=75), content(MiB, seed=76)
    src = origin.add(name, data)
    running = supernode_factory(data_dir=tmp_path / "sn")
    right = {o.num: o.blocks for o in _orders(running.address, src.url)}
    running.stop()
    path = _blocks_file(tmp_path / "sn")
    with open(path, "a") as f:
        piece = hashlib.sha256(data[MiB:]).hexdigest()
        f.write("1 %s %s\n" % (piece, "".join(block_digests(other, BLOCK)[:-1] + [piece])))
    return data, right, os.path.dirname(path)
