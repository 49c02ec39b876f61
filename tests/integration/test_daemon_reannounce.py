"""A daemon keeps offering what its cache holds: after its own restart, and
after the supernode restarted and forgot every task, it announces its cached
blobs again (register, then every piece reported held), and later peers get
them from it rather than from the supernode."""
import pytest
from daemons import fetch, registry_blob, stats
from helpers import MiB, content, wait_until


def _mirror(origin) -> str:
    return origin.url("").rstrip("/")


def _gets(origin, name: str) -> int:
    return len([s for s in origin.served(name) if s.method == "GET"])


def _fetched_from(seeder, later, path, data) -> None:
    """`later` gets the blob at `path` whole, all of it from peers: `seeder` sent it."""
    status, _, body = fetch(later.address, "GET", path)
    assert status == 200 and body == data
    assert stats(later)["bytes_from_peers"] == len(data)
    assert stats(seeder)["uploaded_bytes"] == len(data)


@pytest.mark.time_limit(45)
def test_a_restarted_daemon_offers_its_cached_blobs_to_peers_again(origin, supernode, daemons, tmp_path):
    data = content(10 * MiB, seed=71)
    name, path, _ = registry_blob(origin, data)
    data_dir = str(tmp_path / "seeder")
    first = daemons.start(supernode=[supernode.address], registry_mirror=_mirror(origin),
                          data_dir=data_dir)
    assert fetch(first.address, "GET", path)[2] == data
    daemons.stop(first)   # leaves its tasks: the supernode knows no holder now

    again = daemons.start(supernode=[supernode.address], registry_mirror=_mirror(origin),
                          data_dir=data_dir, heartbeat_s=0.2)
    wait_until(lambda: stats(again)["announced"] == 1, timeout=10, message="the cached blob announced")
    assert stats(again)["seeding"] == 1

    _fetched_from(again, daemons.start(supernode=[supernode.address], registry_mirror=_mirror(origin)),
                  path, data)
    assert _gets(origin, name) == 1


@pytest.mark.time_limit(45)
def test_a_daemon_announces_its_blobs_again_to_a_supernode_that_forgot_them(
        origin, supernode_factory, daemons, tmp_path):
    data = content(10 * MiB, seed=72)
    name, path, _ = registry_blob(origin, data)
    old = supernode_factory(data_dir=tmp_path / "sn-old")
    seeder = daemons.start(supernode=[old.address], registry_mirror=_mirror(origin), heartbeat_s=0.2)
    assert fetch(seeder.address, "GET", path)[2] == data
    assert stats(seeder)["announced"] == 0

    old.stop()   # a new supernode on the same address, knowing nothing
    new = supernode_factory(data_dir=tmp_path / "sn-new", listen=old.address)
    wait_until(lambda: stats(seeder)["announced"] == 1, timeout=15,
               message="the blob announced to the new supernode")
    assert stats(seeder)["seeding"] == 1

    _fetched_from(seeder, daemons.start(supernode=[new.address], registry_mirror=_mirror(origin)),
                  path, data)
    assert _gets(origin, name) == 2   # the new supernode read the source once itself
