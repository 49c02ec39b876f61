"""The detached seeder both ways: a fresh interpreter when threads already run (as
here, under pytest), and the forked spare `dfly get` parks at its start."""
import os
import socket
import subprocess
import sys

import pytest
from helpers import MiB, content, sha256_file, wait_until

from dfly.peer.seeder import Spare, detach

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pids_mentioning(text):
    """Processes whose command line contains `text` (a path unique to one test)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open("/proc/%d/stat" % pid) as f:   # a zombie has exited too
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.time_limit(60)
def test_with_threads_running_the_seeder_is_a_fresh_process_that_serves(
        origin, supernode, client_factory, downloads, tmp_path):
    src = origin.add("f.bin", content(3 * MiB, seed=21))
    first = client_factory([supernode.address], seed_for_s=30)
    first.download(src.url, str(downloads / "first.bin"))
    listener, uploader, tasks = first.detach_listener()
    pid = detach(listener, uploader, tasks, first.peer_id, 30, str(tmp_path / "seeder-data"),
                 supernodes=[supernode.address],
                 registrations={t: first.registration(t) for t in tasks}, secrets=first.secrets)
    first.close()
    assert pid > 0 and pid != os.getpid()   # (os.kill(0, ...) would signal our whole group)
    try:
        result = client_factory([supernode.address]).download(src.url, str(downloads / "second.bin"))
        assert result.bytes_from_peers == src.size   # from the seeder, the only holder left
        assert sha256_file(str(downloads / "second.bin")) == src.sha256
    finally:
        os.kill(pid, 15)
    wait_until(lambda: _gone(pid), timeout=10, message="the seeder stops on SIGTERM")


def _a_dead_spare():
    """The spare's end of the socketpair closed, its process exited (not reaped, as
    a forked spare that died is not: its pid cannot have gone to another process)."""
    ours, theirs = socket.socketpair()
    theirs.close()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, dead.pid, os.WEXITED | os.WNOWAIT)
    return Spare(dead.pid, ours), dead, None


def _a_hung_spare():
    """Alive, its end open, but it never answers."""
    ours, theirs = socket.socketpair()
    hung = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    return Spare(hung.pid, ours, ready_timeout_s=0.5), hung, theirs


@pytest.mark.time_limit(60)
@pytest.mark.parametrize("make_spare", [_a_dead_spare, _a_hung_spare])
def test_a_spare_that_does_not_take_over_is_replaced_by_a_fresh_seeder(
        make_spare, origin, supernode, client_factory, downloads, tmp_path):
    src = origin.add("f.bin", content(3 * MiB, seed=23))
    first = client_factory([supernode.address], seed_for_s=30)
    first.download(src.url, str(downloads / "first.bin"))
    listener, uploader, tasks = first.detach_listener()
    spare, process, held_end = make_spare()
    try:
        pid = detach(listener, uploader, tasks, first.peer_id, 30, str(tmp_path / "seeder-data"),
                     supernodes=[supernode.address], spare=spare,
                     registrations={t: first.registration(t) for t in tasks}, secrets=first.secrets)
    finally:
        first.close()
        if held_end is not None:
            held_end.close()
    assert process.wait(timeout=10) is not None   # killed, if it was still there
    assert pid > 0 and pid not in (process.pid, os.getpid())   # (os.kill(0, ...): our whole group)
    try:
        result = client_factory([supernode.address]).download(src.url, str(downloads / "second.bin"))
        assert result.bytes_from_peers == src.size   # from the new seeder, the only holder left
    finally:
        os.kill(pid, 15)
    wait_until(lambda: _gone(pid), timeout=10, message="the seeder stops on SIGTERM")


def _get(url, out, data_dir, *extra, pass_fds=()):
    return subprocess.run([sys.executable, "-m", "dfly", "get", url, "-o", out, "--data-dir", data_dir,
                           "--no-daemon", "--upload-listen", "127.0.0.1:0"] + list(extra),
                          env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True,
                          timeout=30, pass_fds=pass_fds)


@pytest.fixture
def spare_data(tmp_path):
    """A data dir for a CLI get; whatever still runs with it is stopped afterwards."""
    data_dir = str(tmp_path / "spare-data")
    yield data_dir
    for pid in _pids_mentioning(data_dir):
        os.kill(pid, 15)
    wait_until(lambda: not _pids_mentioning(data_dir), timeout=10, message="the spare stops on SIGTERM")


@pytest.mark.time_limit(60)
def test_a_get_hands_its_pieces_to_its_forked_spare(origin, supernode, client_factory, downloads,
                                                     spare_data):
    src = origin.add("f.bin", content(3 * MiB, seed=22))
    readable, writable = os.pipe()   # a pipe get inherits, as from a shell or a CI runner
    try:
        done = _get(src.url, str(downloads / "first.bin"), spare_data, "--supernode", supernode.address,
                    "--seed-for", "30", "--client-ipv6-prefix", "64",   # carried in the spare's spec
                    pass_fds=(writable,))
        os.close(writable)
        assert done.returncode == 0, done.stderr   # returned: the spare holds neither stdout nor stderr
        os.set_blocking(readable, False)
        assert os.read(readable, 1) == b""   # end of file: nor that pipe
    finally:
        os.close(readable)
    assert len(_pids_mentioning(spare_data)) == 1   # the spare, forked, so with get's command line
    result = client_factory([supernode.address]).download(src.url, str(downloads / "second.bin"))
    assert result.bytes_from_peers == src.size


@pytest.mark.time_limit(60)
def test_a_failed_get_leaves_no_spare_behind(origin, tmp_path):
    data_dir = str(tmp_path / "failed-data")
    done = _get(origin.url("missing.bin"), str(tmp_path / "x.bin"), data_dir, "--seed-for", "60")
    assert done.returncode != 0
    assert "missing.bin" in done.stderr or "404" in done.stderr
    wait_until(lambda: not _pids_mentioning(data_dir), timeout=10,
               message="the unused spare exits with its get")
    assert not os.path.exists(str(tmp_path / "x.bin"))


@pytest.mark.time_limit(90)
def test_two_gets_finishing_at_once_leave_one_seeder(origin, supernode, client_factory, downloads,
                                                      tmp_path):
    """Both found no seeder running and started one: the second hands its task to the
    first (over the data dir's control socket) and exits; the first serves both."""
    from dfly.peer import seeders
    data_dir = str(tmp_path / "seeder-data")
    files = [origin.add("f%d.bin" % i, content(2 * MiB, seed=40 + i)) for i in range(2)]
    pids = []
    try:
        for i, src in enumerate(files):
            client = client_factory([supernode.address], seed_for_s=60)
            client.download(src.url, str(downloads / ("got%d.bin" % i)))
            listener, uploader, tasks = client.detach_listener()
            pids.append(detach(listener, uploader, tasks, client.peer_id, 60, data_dir,
                               supernodes=[supernode.address],
                               registrations={t: client.registration(t) for t in tasks},
                               secrets=client.secrets))
            client.close()
        assert all(pids)
        wait_until(lambda: _gone(pids[1]), timeout=20, message="the second seeder handed over and left")
        listing = seeders.call(data_dir, {"op": "list"})
        assert listing["pid"] == pids[0] and len(listing["tasks"]) == 2
        result = client_factory([supernode.address]).download(files[1].url, str(downloads / "again.bin"))
        assert result.bytes_from_peers == files[1].size   # from the first seeder, the only holder left
    finally:
        seeders.call(data_dir, {"op": "stop"})
        for pid in pids:
            if pid and not _gone(pid):
                os.kill(pid, 9)
