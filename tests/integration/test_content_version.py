"""A task's content version: a file is never made of two versions of its source.

The supernode names the version of a task's pieces in every reply, keeps it
while it resumes or revalidates the source, and ignores pieces reported as
another; a finished task gone stale is revalidated with its validators, and a
seeder that announces meanwhile keeps its pieces offered, unless the source
changed. (A get whose source changes under it: tests/e2e/test_source_changes.py,
with supernodes really killed.)"""
import os
import threading

import pytest
from daemons import handoff_client, stats
from helpers import content, first_task, run_all, sha256_file, wait_until
from origin import Fault

from dfly.errors import SourceChanged
from dfly.peer import seeder as detached
from dfly.protocol.handoff import HandoffRequest
from dfly.protocol.messages import RegisterRequest, ScheduleRequest
from dfly.protocol.pieces import MIN_PIECE_SIZE
from dfly.supernode.client import announce_holder, leave_quietly

PIECE = MIN_PIECE_SIZE   # what files this small are cut into


@pytest.mark.time_limit(30)
def test_pieces_reported_as_another_content_version_are_never_offered(
        origin, supernode, sn_client, client_factory, downloads):
    src = origin.add("v.bin", content(4 * PIECE, seed=90))
    client_factory([supernode.address]).download(src.url, str(downloads / "v.bin"))

    def register(peer_id):
        return sn_client.register(RegisterRequest(url=src.url, peer_id=peer_id, peer_port=9,
                                                  peer_host="127.0.0.1"))

    tid, state = register("stale-holder")
    assert state.content_version
    reply = sn_client.schedule(tid, ScheduleRequest("stale-holder", done=[0, 1, 2, 3], want=0,
                                                    content_version="0123456789abcdef"))
    assert reply.content_version == state.content_version   # how the peer learns it is stale
    register("asker")
    pieces = sn_client.schedule(tid, ScheduleRequest("asker", want=4)).pieces
    assert pieces and {p.holder for p in pieces} == {"supernode"}   # (its share of the slots)

    register("holder")   # the same report in the task's version is believed
    sn_client.schedule(tid, ScheduleRequest("holder", done=[0, 1, 2, 3], want=0,
                                            content_version=state.content_version))
    register("asker2")
    pieces = sn_client.schedule(tid, ScheduleRequest("asker2", want=4)).pieces
    assert {p.holder for p in pieces} == {"holder"}


@pytest.mark.time_limit(30)
def test_a_stale_task_is_revalidated_with_its_validators_while_the_supernode_runs(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(revalidate_after_s=0)   # every later get finds it stale
    src = origin.add("stale.bin", content(3 * PIECE, seed=96))
    client = client_factory([supernode.address])
    versions = set()
    for i in range(3):
        result = client.download(src.url, str(downloads / ("%d.bin" % i)))
        assert sha256_file(str(downloads / ("%d.bin" % i))) == src.sha256
        assert result.bytes_from_supernode == src.size
        versions.add(first_task(supernode.address)["content_version"])
    served = origin.served("stale.bin")
    assert [s.status for s in served] == [200, 304, 304]
    assert [s.headers.get("If-None-Match") for s in served[1:]] == [src.etag, src.etag]
    assert origin.body_bytes("stale.bin") == src.size
    assert len(versions) == 1

    new = origin.add("stale.bin", content(3 * PIECE + 5, seed=97))   # and a change is seen
    client.download(src.url, str(downloads / "new.bin"))
    assert sha256_file(str(downloads / "new.bin")) == new.sha256
    assert origin.served("stale.bin")[-1].status == 200
    assert first_task(supernode.address)["content_version"] not in versions


@pytest.mark.time_limit(30)
def test_a_seeder_announcing_while_a_stale_task_is_revalidated_keeps_its_pieces_offered(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(revalidate_after_s=0)
    src = origin.add("seeded.bin", content(4 * PIECE, seed=98))
    seeder = client_factory([supernode.address], seed_for_s=60)
    tid = seeder.download(src.url, str(downloads / "seeder.bin")).task_id
    # still serving, but unknown: as after a restart
    leave_quietly(supernode.address, tid, seeder.peer_id, secrets=seeder.secrets)
    hold = origin.fault("seeded.bin", Fault(hold=threading.Event()))
    later = client_factory([supernode.address])

    def announce_during_revalidation():
        wait_until(lambda: first_task(supernode.address).get("state") == "running", timeout=10,
                   message="the revalidation under way")
        address = announce_holder([supernode.address], seeder.registration(tid), 4,
                                  content_version=seeder.content_version_of(tid),
                                  secrets=seeder.secrets)
        hold.hold.set()
        return address

    [(result, error), (address, announce_error)] = run_all(
        [lambda: later.download(src.url, str(downloads / "later.bin")), announce_during_revalidation],
        timeout=25)
    assert error is None and announce_error is None, (error, announce_error)
    assert address == supernode.address
    assert sha256_file(str(downloads / "later.bin")) == src.sha256
    assert origin.served("seeded.bin")[-1].status == 304
    assert result.bytes_from_peers == src.size, "the seeder's pieces were dropped"


@pytest.mark.time_limit(30)
def test_a_seeder_of_a_changed_source_is_told_its_pieces_are_stale(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(revalidate_after_s=0)
    src = origin.add("old.bin", content(2 * PIECE, seed=99))
    seeder = client_factory([supernode.address], seed_for_s=60)
    tid = seeder.download(src.url, str(downloads / "seeder.bin")).task_id
    version = seeder.content_version_of(tid)
    leave_quietly(supernode.address, tid, seeder.peer_id, secrets=seeder.secrets)
    origin.add("old.bin", content(2 * PIECE, seed=100))
    later = client_factory([supernode.address])
    later.download(src.url, str(downloads / "later.bin"))   # the supernode cuts the new content
    with pytest.raises(SourceChanged):
        announce_holder([supernode.address], seeder.registration(tid), 2, content_version=version,
                        secrets=seeder.secrets)


@pytest.mark.time_limit(45)
def test_a_daemon_stops_offering_a_cached_file_whose_source_changed(
        origin, supernode_factory, client_factory, daemons, downloads, tmp_path):
    src = origin.add("cached.bin", content(2 * PIECE, seed=101))
    first = supernode_factory(data_dir=tmp_path / "sn-a")
    data_dir = str(tmp_path / "seeder")
    seeder = daemons.start(supernode=[first.address], heartbeat_s=0.2, data_dir=data_dir)
    handoff_client(seeder).download(HandoffRequest(src.url, str(downloads / "d.bin")), 20)
    seeds = os.path.join(data_dir, "daemon", "seeds")
    assert len(os.listdir(seeds)) == 1 and stats(seeder)["seeding"] == 1

    first.stop()   # a new supernode on the same address, and the file changed meanwhile
    origin.add("cached.bin", content(2 * PIECE, seed=102))   # same size: only the version tells
    second = supernode_factory(data_dir=tmp_path / "sn-b", listen=first.address)
    client_factory([second.address]).download(src.url, str(downloads / "new.bin"))
    # (The seed record goes first, then the task is released: wait for both.)
    wait_until(lambda: not os.listdir(seeds) and stats(seeder)["seeding"] == 0, timeout=15,
               message="the stale file no longer offered")
    assert stats(seeder)["announced"] == 0


@pytest.mark.time_limit(30)
def test_a_detached_seeder_whose_pieces_are_of_another_version_leaves_thefirst_task(
        origin, supernode, client_factory, downloads):
    src = origin.add("seed.bin", content(2 * PIECE, seed=103))
    first = client_factory([supernode.address], seed_for_s=30)
    tid = first.download(src.url, str(downloads / "seed.bin")).task_id
    task = {"task_id": tid, "supernode": supernode.address, "length": src.size, "piece_size": PIECE,
            "register": first.registration(tid).to_json(),
            "content_version": first.content_version_of(tid)}
    spec = {"peer_id": first.peer_id, "supernodes": [supernode.address],
            "secrets": first.secrets.to_json()}
    assert detached._heartbeat(dict(task), spec)   # its pieces are the task's: it stays
    assert first_task(supernode.address)["peers"] == 1
    assert not detached._heartbeat(dict(task, content_version="0123456789abcdef"), spec)
    assert first_task(supernode.address)["peers"] == 0
