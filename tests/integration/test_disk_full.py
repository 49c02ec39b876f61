"""A full disk is a clear LocalIOError for the peer and a 507 from the daemon
(which keeps serving), and leaves no partial file behind. A full supernode
cache is the supernode's problem: its task fails, not as the source's fault
(not remembered), gets fall back to the origin, and no piece short on its
disk is ever offered. Needs root to mount a tiny tmpfs."""
import hashlib
import http.client
import os
import subprocess
import uuid

import pytest
from daemons import DaemonFactory, fetch, registry_blob, stats
from helpers import MiB, content, leftovers

from dfly.errors import LocalIOError
from dfly.protocol.pieces import piece_range
from dfly.supernode.cdn import Fetch
from dfly.supernode.client import SupernodeClient
from dfly.supernode.scheduler import SchedulerConfig
from dfly.supernode.task import FAILED, Task


def _tmpfs(tmp_path, size: str):
    mount = tmp_path / ("tiny-%s" % uuid.uuid4().hex[:6])
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", str(mount)],
                          capture_output=True, timeout=10)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): %s" % done.stderr.decode().strip())
    return mount


# A test asks for its disk before the program that writes there (pytest sets fixtures up
# in that order and tears them down in reverse): unmounted under a running supernode,
# its fetch thread, still ending (the eviction that follows a fetch), lost its folder.
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


def test_gets_through_a_supernode_whose_cache_is_full_fall_back_to_the_origin(
        origin, tiny_disk, supernode_factory, client_factory, downloads):
    src = origin.add("big.bin", content(6 * MiB, seed=8))
    supernode = supernode_factory(data_dir=tiny_disk)
    for name in ("first.bin", "second.bin"):
        result = client_factory([supernode.address]).download(src.url, str(downloads / name))
        assert result.via == "source" and (downloads / name).read_bytes() == src.data
    sn = SupernodeClient(supernode.address, timeout_s=5)
    try:
        [task] = sn.tasks()
    finally:
        sn.close()
    assert task["state"] == "failed" and "cache write failed" in task["error"]
    # The half file that could not be finished does not keep the disk full.
    assert not os.path.exists(str(tiny_disk / "tasks" / task["task_id"] / "data"))
    assert leftovers(str(downloads)) == []


def test_with_no_back_source_a_get_through_a_full_supernode_is_a_local_io_error(
        origin, tiny_disk, supernode_factory, client_factory, downloads):
    src = origin.add("big.bin", content(6 * MiB, seed=12))
    supernode = supernode_factory(data_dir=tiny_disk)
    client = client_factory([supernode.address], no_back_source=True)
    with pytest.raises(LocalIOError, match="supernode cache write failed"):
        client.download(src.url, str(downloads / "big.bin"))
    assert not (downloads / "big.bin").exists() and leftovers(str(downloads)) == []


def test_a_supernode_disk_failure_is_not_remembered_once_the_file_fits(
        origin, tiny_disk, supernode_factory, client_factory, downloads):
    """--failure-ttl is for sources that fail, not for a disk that was full a moment ago."""
    src = origin.add("grows.bin", content(6 * MiB, seed=13))
    supernode = supernode_factory(data_dir=tiny_disk, failure_ttl_s=600.0)
    with pytest.raises(LocalIOError):
        client_factory([supernode.address], no_back_source=True).download(
            src.url, str(downloads / "a.bin"))
    small = origin.add("grows.bin", content(MiB // 2, seed=14))
    result = client_factory([supernode.address], no_back_source=True).download(
        src.url, str(downloads / "b.bin"))
    assert result.via == "p2p" and (downloads / "b.bin").read_bytes() == small.data


def test_a_short_write_on_a_full_cache_disk_is_never_offered_as_a_piece(origin, tiny_disk):
    """Unbuffered writes may take part of a block when the disk fills: that piece
    must fail with ENOSPC, not be hashed from memory and offered."""
    src = origin.add("big.bin", content(6 * MiB, seed=15))
    task = Task("1" * 64, src.url, {}, None, str(tiny_disk / "task"), SchedulerConfig())
    offered = {}

    def check_disk(task, num, sha256_hex):   # runs just before each piece is offered
        start, size = piece_range(num, task.length, task.piece_size)
        with open(task.data_path, "rb") as f:
            f.seek(start)
            offered[num] = hashlib.sha256(f.read(size)).hexdigest() == sha256_hex

    Fetch(task, 5.0, None, before_offer=check_disk).run()
    assert task.state == FAILED and task.error_kind == "LocalIOError"
    assert offered and all(offered.values()), "pieces offered, True if whole on disk: %s" % offered


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


def test_a_daemon_whose_cache_disk_is_full_answers_507_and_keeps_serving(origin, pieceless_disk, mirror_on):
    """Full before the first piece verified: nothing was sent yet, so a 507."""
    running, big, big_path = mirror_on(pieceless_disk, seed=9)
    status, _, body = fetch(running.address, "GET", big_path)
    assert status == 507 and b"No space left" in body
    assert big[:4096] not in body
    _keeps_serving(origin, running, pieceless_disk)


def test_a_daemon_whose_disk_fills_mid_blob_cuts_the_body_short_and_keeps_serving(
        origin, tiny_disk, mirror_on):
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
