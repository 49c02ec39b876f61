"""A full disk is a clear LocalIOError for the peer, a failed task for the
supernode and a 507 from the daemon (which keeps serving), and leaves no
partial file behind. Needs root to mount a tiny tmpfs."""
import http.client
import os
import subprocess
import uuid

import pytest
from daemons import DaemonFactory, fetch, registry_blob, stats
from helpers import MiB, content, leftovers

from dfly.errors import DflyError, LocalIOError


def _tmpfs(tmp_path, size: str):
    mount = tmp_path / ("tiny-%s" % uuid.uuid4().hex[:6])
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", str(mount)],
                          capture_output=True, timeout=10)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): %s" % done.stderr.decode().strip())
    return mount


@pytest.fixture
def tiny_disk(tmp_path):
    """Room for a piece or two, not for a 6 MiB file."""
    mount = _tmpfs(tmp_path, "2m")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10)


@pytest.fixture
def pieceless_disk(tmp_path):
    """Smaller than one piece (MIN_PIECE_SIZE)."""
    mount = _tmpfs(tmp_path, "512k")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10)


def test_a_download_onto_a_full_disk_fails_cleanly(origin, supernode, client_factory, tiny_disk):
    src = origin.add("big.bin", content(6 * MiB, seed=7))
    client = client_factory([supernode.address])
    with pytest.raises(LocalIOError, match="No space left"):
        client.download(src.url, str(tiny_disk / "big.bin"))
    assert os.listdir(str(tiny_disk)) == []
    assert leftovers(str(tiny_disk)) == []


def test_a_supernode_whose_cache_is_full_fails_the_task_for_its_peers(
        origin, supernode_factory, client_factory, tiny_disk, tmp_path):
    src = origin.add("big.bin", content(6 * MiB, seed=8))
    supernode = supernode_factory(data_dir=tiny_disk)
    client = client_factory([supernode.address])
    with pytest.raises(DflyError, match="supernode cache write failed"):
        client.download(src.url, str(tmp_path / "big.bin"))
    assert not (tmp_path / "big.bin").exists()
    assert leftovers(str(tmp_path)) == []


@pytest.fixture
def mirror_on(origin, supernode, tmp_path):
    """mirror_on(disk, seed, **settings) -> (a daemon caching on `disk`, a 6 MiB blob, its path)."""
    factory = DaemonFactory(str(tmp_path / "daemons"))

    def start(disk, seed, **settings):
        big = content(6 * MiB, seed=seed)
        _, big_path, _ = registry_blob(origin, big)
        running = factory.start(supernode=[supernode.address], data_dir=str(disk),
                                registry_mirror=origin.url("").rstrip("/"), **settings)
        return running, big, big_path

    yield start
    factory.stop_all()


def _keeps_serving(origin, running, disk) -> None:
    """No partial file stays on the full disk, and a small blob is still served."""
    assert stats(running)["cache_files"] == 0
    assert leftovers(os.path.join(str(disk), "daemon", "cache")) == []
    small = content(256 << 10, seed=10)
    _, small_path, small_digest = registry_blob(origin, small)
    status, headers, body = fetch(running.address, "GET", small_path)
    assert status == 200 and body == small and headers["docker-content-digest"] == small_digest


def test_a_daemon_whose_cache_disk_is_full_answers_507_and_keeps_serving(origin, mirror_on, pieceless_disk):
    """Full before the first piece verified: nothing was sent yet, so a 507."""
    running, big, big_path = mirror_on(pieceless_disk, seed=9)
    status, _, body = fetch(running.address, "GET", big_path)
    assert status == 507 and b"No space left" in body
    assert big[:4096] not in body
    _keeps_serving(origin, running, pieceless_disk)


def test_a_daemon_whose_disk_fills_mid_blob_cuts_the_body_short_and_keeps_serving(
        origin, mirror_on, tiny_disk):
    """Full after pieces were already streamed: the status is sent, so the client
    sees the body end early (never a complete-looking wrong blob)."""
    # One piece at a time: the first is whole, verified and streamed before the disk
    # fills. With four at once, four half pieces can fill it first (then it is the 507
    # case above), which a loaded machine's scheduling made happen now and then.
    running, big, big_path = mirror_on(tiny_disk, seed=11, parallel=1)
    with pytest.raises(http.client.IncompleteRead) as cut:
        fetch(running.address, "GET", big_path)
    assert 0 < len(cut.value.partial) < len(big)
    assert big.startswith(cut.value.partial)
    _keeps_serving(origin, running, tiny_disk)
