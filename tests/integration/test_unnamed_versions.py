"""Content versions of a source that names none: no strong ETag, so only the
piece digests can tell its bytes from others. A cut from byte 0 keeps the
version of the copy it replaces while its pieces match that copy's digests
(peers keep what they hold, daemons keep offering), and becomes a version of
its own at the first piece that differs, or that a peer claims without its
digest ever being known here: never a file of two versions. (Two restarts
of a get's supernode on such an origin: tests/e2e/test_source_changes.py.)"""
import json
import os
import threading

import pytest
from helpers import content, first_task, sha256_file, wait_until
from origin import Fault

from dfly.protocol.messages import RegisterRequest, ScheduleRequest
from dfly.protocol.pieces import MIN_PIECE_SIZE
from dfly.supernode.client import SupernodeClient

PIECE = MIN_PIECE_SIZE   # what files this small are cut into
UNNAMED = dict(no_etag=True, no_last_modified=True, no_ranges=True)


@pytest.mark.time_limit(30)
def test_a_refetch_without_validators_keeps_the_version_of_the_same_bytes_and_not_of_others(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(revalidate_after_s=0)   # every later get refetches it whole
    src = origin.add("u.bin", content(4 * PIECE, seed=130))
    origin.fault("u.bin", **UNNAMED)
    client = client_factory([supernode.address])
    versions = []
    for i in range(3):
        client.download(src.url, str(downloads / ("%d.bin" % i)))
        assert sha256_file(str(downloads / ("%d.bin" % i))) == src.sha256
        versions.append(first_task(supernode.address)["content_version"])
    assert [s.status for s in origin.served("u.bin")] == [200, 200, 200]
    assert len(set(versions)) == 1, versions

    data = bytearray(src.data)
    data[-1] ^= 0xFF   # the same length, its last piece differs
    changed = origin.add("u.bin", bytes(data))
    client.download(src.url, str(downloads / "changed.bin"))
    assert sha256_file(str(downloads / "changed.bin")) == changed.sha256
    assert first_task(supernode.address)["content_version"] not in versions


def _partial_copy(origin, supernode_factory, client_factory, downloads, tmp_path):
    """A supernode's data dir holding the first piece of u.bin (4 pieces, no
    validator) with the meta a process killed after cutting it leaves; then
    a supernode started on it. (the supernode, the file, its old version)"""
    src = origin.add("u.bin", content(4 * PIECE, seed=131))
    origin.fault("u.bin", **UNNAMED)
    data_dir = tmp_path / "sn"
    first = supernode_factory(data_dir=data_dir)
    client_factory([first.address]).download(src.url, str(downloads / "first.bin"))
    version = first_task(first.address)["content_version"]
    first.stop()
    [folder] = os.listdir(str(data_dir / "tasks"))
    meta_path = str(data_dir / "tasks" / folder / "meta.json")
    with open(meta_path) as f:
        meta = json.load(f)
    meta.update(complete=False, digests=meta["digests"][:1])
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    return supernode_factory(data_dir=data_dir), src, version


@pytest.mark.time_limit(30)
def test_a_piece_claimed_past_the_earlier_copys_digests_makes_the_cut_a_version_of_its_own(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    supernode, src, version = _partial_copy(origin, supernode_factory, client_factory, downloads, tmp_path)
    hold = origin.fault("u.bin", Fault(hold=threading.Event(), **UNNAMED))
    sn = SupernodeClient(supernode.address, timeout_s=5)
    try:
        tid, _ = sn.register(RegisterRequest(url=src.url, peer_id="old-holder", peer_port=9,
                                             peer_host="127.0.0.1"))
        sn.schedule(tid, ScheduleRequest("old-holder", done=[0, 2], want=0, content_version=version))
        hold.hold.set()   # piece 0 matches the copy's digest; nothing here ever knew piece 2's
        wait_until(lambda: first_task(supernode.address).get("state") == "done", timeout=10)
        reply = sn.schedule(tid, ScheduleRequest("old-holder", want=0, content_version=version))
    finally:
        sn.close()
    assert reply.content_version not in ("", version)   # how the holder learns to drop its pieces
    client_factory([supernode.address]).download(src.url, str(downloads / "later.bin"))
    assert sha256_file(str(downloads / "later.bin")) == src.sha256


@pytest.mark.time_limit(30)
def test_a_late_report_of_a_piece_past_the_earlier_copys_digests_makes_the_cut_a_version_of_its_own(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    supernode, src, version = _partial_copy(origin, supernode_factory, client_factory, downloads, tmp_path)
    client_factory([supernode.address]).download(src.url, str(downloads / "again.bin"))
    assert first_task(supernode.address)["content_version"] == version   # the same bytes, cut again
    sn = SupernodeClient(supernode.address, timeout_s=5)
    try:
        tid, _ = sn.register(RegisterRequest(url=src.url, peer_id="late-holder", peer_port=9,
                                             peer_host="127.0.0.1"))
        reply = sn.schedule(tid, ScheduleRequest("late-holder", done=[0, 3], want=0,
                                                 content_version=version))
    finally:
        sn.close()
    assert reply.content_version not in ("", version)
    later = client_factory([supernode.address]).download(src.url, str(downloads / "later.bin"))
    assert sha256_file(str(downloads / "later.bin")) == src.sha256
    assert later.bytes_from_peers == 0   # the late holder's pieces were never offered


def test_the_digests_a_cut_is_matched_against_outlive_a_crash_until_it_has_passed_them(tmp_path):
    from dfly.supernode.scheduler import SchedulerConfig
    from dfly.supernode.task import Task
    task = Task("0" * 64, "http://origin/f", {}, None, str(tmp_path), SchedulerConfig())
    with task.cond:
        task.new_version("v1", ["a", "b"])
        task.piece_written("a")
        task.save_meta()
        with open(task.meta_path) as f:
            assert json.load(f)["confirming"] == ["a", "b"]   # what the next cut is matched against
        task.piece_written("b")
        task.save_meta()
        with open(task.meta_path) as f:
            assert "confirming" not in json.load(f)   # the digests say it all now
