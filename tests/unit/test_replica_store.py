"""ReplicaStore: the other members' task metadata a member keeps on disk, so that
after a restart it can still take their tasks over (a file per task, written
whole and renamed)."""
import json
import os

from dfly.supernode.cluster import ReplicaStore

TID = "a" * 64


def _replica(digests, version=""):
    return {"url": "http://origin/f", "length": 3, "piece_size": 1, "digests": digests,
            "content_version": version}


def test_a_replica_put_is_read_back_counted_and_listed(tmp_path):
    store = ReplicaStore(str(tmp_path / "replicas"))
    assert (store.get(TID), store.count(TID), store.ids()) == (None, 0, [])
    store.put(TID, _replica(["d0", "d1"]))
    assert store.get(TID) == _replica(["d0", "d1"])
    assert (store.count(TID), store.ids()) == (2, [TID])


def test_replicas_outlive_a_restart_and_no_temporary_file_is_left(tmp_path):
    folder = str(tmp_path / "replicas")
    ReplicaStore(folder).put(TID, _replica(["d0"], "v1"))
    assert os.listdir(folder) == [TID + ".json"]
    again = ReplicaStore(folder)
    assert again.get(TID) == _replica(["d0"], "v1") and again.ids() == [TID]


def test_an_unreadable_replica_file_is_skipped_at_start(tmp_path):
    folder = tmp_path / "replicas"
    folder.mkdir()
    (folder / (TID + ".json")).write_text("{not json")
    (folder / ("b" * 64 + ".json")).write_text(json.dumps(_replica(["d0"])))
    store = ReplicaStore(str(folder))
    assert store.ids() == ["b" * 64] and store.get(TID) is None


def test_a_replica_without_a_digest_list_is_not_kept(tmp_path):
    store = ReplicaStore(str(tmp_path / "replicas"))
    store.put(TID, {"url": "http://origin/f", "digests": "d0"})
    assert store.get(TID) is None and os.listdir(str(tmp_path / "replicas")) == []


def test_newer_means_more_digests_or_another_content_version(tmp_path):
    store = ReplicaStore(str(tmp_path / "replicas"))
    assert store.newer(TID, _replica([]))   # anything is newer than nothing
    store.put(TID, _replica(["d0", "d1"], "v1"))
    assert store.newer(TID, _replica(["d0", "d1", "d2"], "v1"))
    assert not store.newer(TID, _replica(["d0", "d1"], "v1"))
    assert not store.newer(TID, _replica(["d0"], "v1"))
    assert store.newer(TID, _replica(["x0"], "v2"))        # cut afresh: fewer, but newer
    assert store.newer(TID, {"digests": ["d0"]})            # no version named: another one
    store.put(TID, _replica(["d0"]))
    assert not store.newer(TID, {"digests": ["d0"], "content_version": None})   # none is ""
    assert not store.newer(TID, {"digests": None})
