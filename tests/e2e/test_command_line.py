"""The command line as a new user meets it (issue 16), driven through the built
zipapp: `-o` never breaks what is at the path, ordinary mistakes are one line."""
import json
import marshal
import os
import pty
import re
import resource
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile

import pytest
from helpers import MiB, content, leftovers, refused_address, wait_until

TIMEOUT_S = 60


def dfly(pyz, *args, env=None, timeout=TIMEOUT_S, **kwargs):
    """Run `python dfly.pyz ARGS` to the end; the CompletedProcess (text)."""
    return subprocess.run([sys.executable, pyz] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout, env=env, **kwargs)


def get(pyz, url, output, tmp_path, *more):
    """`dfly get` in its own process: no daemon, no supernode, nothing seeded."""
    return dfly(pyz, "get", url, "-o", output, "--no-daemon", "--seed-for", "0",
                "--data-dir", tmp_path / "data", *more)


def one_line_error(proc, code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dfly: error: "), proc.stderr
    return lines[0]


# -o: what is at the path -------------------------------------------------------------

def _char_device(path, minor: int) -> None:
    """A node like the host's /dev/null (minor 3) or /dev/full (7), made here, never /dev's."""
    try:
        os.mknod(str(path), stat.S_IFCHR | 0o666, os.makedev(1, minor))
        with open(str(path), "wb"):
            pass
    except OSError as e:   # not root, or a filesystem mounted nodev
        pytest.skip("cannot make and open a character device here: %s" % e)


def test_get_into_a_character_device_writes_to_it_and_leaves_it_a_device(pyz, origin, tmp_path):
    src = origin.add("f.bin", content(2 * MiB, seed=1))
    null = tmp_path / "null"
    _char_device(null, 3)
    proc = get(pyz, src.url, null, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISCHR(os.lstat(str(null)).st_mode), "-o replaced the device with a file"
    assert leftovers(str(tmp_path)) == []


def test_get_into_a_full_device_is_exit_6_and_leaves_it_a_device(pyz, origin, tmp_path):
    src = origin.add("f.bin", content(2 * MiB, seed=2))
    full = tmp_path / "full"
    _char_device(full, 7)
    line = one_line_error(get(pyz, src.url, full, tmp_path), 6)
    assert str(full) in line and "No space left" in line
    assert stat.S_ISCHR(os.lstat(str(full)).st_mode)
    assert leftovers(str(tmp_path)) == []


def test_get_into_a_fifo_writes_the_bytes_in_order_to_its_reader(pyz, origin, tmp_path):
    data = content(3 * MiB, seed=3)
    src = origin.add("f.bin", data)
    fifo = tmp_path / "pipe"
    os.mkfifo(str(fifo))
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), name="fifo-reader",
                              daemon=True)
    reader.start()
    proc = get(pyz, src.url, fifo, tmp_path)
    reader.join(TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    assert received == [data]
    assert stat.S_ISFIFO(os.lstat(str(fifo)).st_mode)


def test_get_through_a_symlink_replaces_the_file_it_points_to(pyz, origin, tmp_path):
    data = content(1 * MiB, seed=4)
    src = origin.add("f.bin", data)
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "f.bin"
    real.write_bytes(b"old")
    link = tmp_path / "link"
    link.symlink_to(real)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "real" / "new.bin")
    assert get(pyz, src.url, link, tmp_path).returncode == 0
    assert get(pyz, src.url, dangling, tmp_path).returncode == 0
    assert os.path.islink(str(link)) and os.path.islink(str(dangling))
    assert real.read_bytes() == data and (tmp_path / "real" / "new.bin").read_bytes() == data
    assert leftovers(str(tmp_path)) == [] and leftovers(str(tmp_path / "real")) == []


def test_get_into_a_directory_is_one_line_and_fetches_nothing(pyz, origin, tmp_path):
    src = origin.add("f.bin", content(1 * MiB, seed=5))
    folder = tmp_path / "folder"
    folder.mkdir()
    line = one_line_error(get(pyz, src.url, folder, tmp_path), 6)
    assert "is a directory" in line
    # a folder not there yet, named as one: not a file made under its name
    line = one_line_error(get(pyz, src.url, str(tmp_path / "new") + "/", tmp_path), 6)
    assert "is a directory" in line and not (tmp_path / "new").exists()
    assert "-o needs a file name" in one_line_error(get(pyz, src.url, "", tmp_path), 2)
    assert os.listdir(str(folder)) == [] and origin.requests("f.bin") == 0


@pytest.mark.time_limit(90)
def test_get_into_dev_stdout_or_an_inherited_descriptor_writes_through_it(pyz, origin, daemon, tmp_path):
    data = content(2 * MiB, seed=16)
    src = origin.add("f.bin", data)
    argv = [sys.executable, pyz, "get", src.url, "--no-daemon", "--seed-for", "0",
            "--data-dir", str(tmp_path / "data"), "-o"]
    piped = subprocess.run(argv + ["/dev/stdout"], capture_output=True, timeout=TIMEOUT_S)
    assert piped.returncode == 0 and piped.stdout == data, piped.stderr
    log = tmp_path / "log"   # `>> log`: what it held stays, the bytes come after
    log.write_bytes(b"earlier lines\n")
    with open(str(log), "ab") as appended:
        proc = subprocess.run(argv + ["/dev/stdout"], stdout=appended, stderr=subprocess.PIPE,
                              timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    assert log.read_bytes() == b"earlier lines\n" + data
    # a shell's `-o >(sha256sum)`: /dev/fd/N of a pipe, even with a daemon running to hand to
    for flags in (["--no-daemon"], _via_daemon(daemon)):
        read_end, write_end = os.pipe()
        received = []
        reader = threading.Thread(target=_read_to_end, args=(read_end, received), name="fd-reader",
                                  daemon=True)
        reader.start()
        try:
            proc = subprocess.run([sys.executable, pyz, "get", src.url, "-o", "/dev/fd/%d" % write_end,
                                   "--seed-for", "0", "--data-dir", str(tmp_path / "data")] + flags,
                                  pass_fds=(write_end,), capture_output=True, timeout=TIMEOUT_S)
        finally:
            os.close(write_end)
        reader.join(TIMEOUT_S)
        assert proc.returncode == 0, (flags, proc.stderr)
        assert received == [data], flags
    assert leftovers(str(tmp_path)) == []


def _read_to_end(fd: int, into: list) -> None:
    with os.fdopen(fd, "rb") as f:
        into.append(f.read())


# ordinary mistakes: one line, the documented exit code, never a traceback --------------

@pytest.fixture()
def held_port():
    """A port another socket listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield "127.0.0.1:%d" % sock.getsockname()[1]
    sock.close()


def _mistakes(tmp_path, held: str, refused: str, supernode: str):
    """(name, argv, exit code) for each ordinary mistake at each command's start."""
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    bad_dir = str(blocker / "data")   # under a regular file: cannot be created
    missing = str(tmp_path / "missing.json")
    url = "http://127.0.0.1:9/f.bin"   # never reached: each mistake is caught before
    quick = ["--no-daemon", "--seed-for", "0", "--data-dir", str(tmp_path / "g")]
    yield "supernode port in use", ["supernode", "--listen", held, "--data-dir", tmp_path / "s"], 2
    yield "daemon port in use", ["daemon", "--listen", held, "--data-dir", tmp_path / "d"], 2
    yield "daemon upload port in use", ["daemon", "--listen", "127.0.0.1:0", "--upload-listen", held,
                                        "--data-dir", tmp_path / "d"], 2
    yield "daemon upload address not ours", ["daemon", "--listen", "127.0.0.1:0", "--upload-listen",
                                             "192.0.2.1:0", "--data-dir", tmp_path / "d"], 2
    # (the uploader starts once the supernode answered: it listens on the family it advertises)
    yield "get upload port in use", ["get", url, "-o", tmp_path / "o", "--supernode", supernode,
                                     "--upload-listen", held] + quick, 2
    yield "get upload address not ours", ["get", url, "-o", tmp_path / "o", "--supernode", supernode,
                                          "--upload-listen", "192.0.2.1:0"] + quick, 2
    yield "supernode address not ours", ["supernode", "--listen", "192.0.2.1:0",
                                         "--data-dir", tmp_path / "s"], 2
    yield "daemon address not ours", ["daemon", "--listen", "192.0.2.1:0",
                                      "--data-dir", tmp_path / "d"], 2
    yield "supernode data dir", ["supernode", "--listen", "127.0.0.1:0", "--data-dir", bad_dir], 6
    yield "daemon data dir", ["daemon", "--listen", "127.0.0.1:0", "--data-dir", bad_dir], 6
    yield "demo data dir", ["demo", "--size", "1M", "--data-dir", bad_dir], 6
    yield "get data dir", ["get", url, "-o", tmp_path / "o", "--supernode", refused, "--no-daemon",
                           "--data-dir", bad_dir], 6
    for command in ("supernode", "daemon", "bench"):
        extra = [url, "--supernode", refused] if command == "bench" else []
        yield "%s config" % command, [command] + extra + ["--config", missing], 2
    yield "get config", ["get", url, "-o", tmp_path / "o", "--config", missing] + quick, 2
    # the gossip listener is a listener like the others (it said "the host refused", exit 6)
    gossip = ["--listen", "127.0.0.1:0", "--gossip", "--gossip-key-file", _gossip_key(tmp_path)]
    yield "supernode gossip port in use", ["supernode", "--gossip-listen", held,
                                           "--data-dir", tmp_path / "s"] + gossip, 2
    yield "daemon gossip port in use", ["daemon", "--gossip-listen", held, "--join", refused,
                                        "--data-dir", tmp_path / "d"] + gossip, 2
    yield "supernode gossip address not ours", ["supernode", "--gossip-listen", "192.0.2.1:0",
                                                "--data-dir", tmp_path / "s"] + gossip, 2
    # bench: before any simulated peer starts, not one failure per peer (exit 1)
    yield "bench data dir", ["bench", url, "--supernode", supernode, "--data-dir", bad_dir], 6
    yield "bench upload port in use", ["bench", url, "--supernode", supernode, "--upload-listen", held], 2
    yield "export data dir", ["export", url, "-o", tmp_path / "x.tar", "--supernode", supernode,
                              "--data-dir", bad_dir], 6
    yield "export upload port in use", ["export", url, "-o", tmp_path / "x.tar", "--supernode",
                                        supernode, "--upload-listen", held,
                                        "--data-dir", tmp_path / "e"], 2
    # the commands that open no listener and make no data dir: their own ordinary mistakes
    yield "import data dir", ["import", blocker, "--data-dir", bad_dir, "--into", "daemon"], 6
    yield "scrub no cache", ["scrub", "--data-dir", bad_dir], 2
    yield "seeders data dir", ["seeders", "--stop", "--data-dir", bad_dir], 0   # none runs there
    yield "setup root", ["setup", "docker", "--root", blocker], 2
    for command in ("preheat", "publish"):
        yield "%s token file" % command, [command, url, "--supernode", supernode,
                                          "--token-file", missing], 2
    yield "validate missing file", ["validate", missing], 1
    # a value dfly validate refuses is refused at start too (0 workers fetched nothing)
    yield "get parallel 0", ["get", url, "-o", tmp_path / "o", "--parallel", "0"] + quick, 2
    yield "supernode max uploads 0", ["supernode", "--listen", "127.0.0.1:0", "--max-uploads", "0",
                                      "--data-dir", tmp_path / "s0"], 2


def _gossip_key(tmp_path) -> str:
    path = tmp_path / "gossip.key"
    path.write_text("k" * 32 + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.mark.time_limit(150)   # some 35 starts of the zipapp, one after another
def test_every_command_start_refuses_an_ordinary_mistake_in_one_line(pyz, tmp_path, held_port,
                                                                      supernode):
    with refused_address() as (host, port):
        refused = "%s:%d" % (host, port)
        for name, argv, code in _mistakes(tmp_path, held_port, refused, supernode.address):
            proc = dfly(pyz, *argv, timeout=30)
            assert proc.returncode == code and "Traceback" not in proc.stderr, (name, proc.stderr)
            if code == 0:
                continue
            if name.startswith("validate"):   # a compiler's line, on stdout: FILE:LINE: error: ...
                assert proc.stdout.startswith(str(argv[-1]) + ":1: error: "), (name, proc.stdout)
                continue
            last = proc.stderr.strip().splitlines()[-1]
            assert last.startswith("dfly: error: "), (name, proc.stderr)


def _why_no_private_network() -> str:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (a network namespace of its own)"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    return ""


@pytest.mark.skipif(bool(_why_no_private_network()), reason=_why_no_private_network() or "runs")
@pytest.mark.time_limit(90)
def test_a_listen_name_that_does_not_resolve_is_one_line_exit_2(pyz, tmp_path):
    # In a network namespace of its own (no interface up, no route), so the lookup of a
    # name no hosts file knows fails at once and no query can leave this host.
    name = "no-such-host.invalid:0"
    gossip = ["--listen", "127.0.0.1:0", "--gossip", "--gossip-key-file", _gossip_key(tmp_path)]
    cases = {"supernode": ["supernode", "--listen", name, "--data-dir", tmp_path / "s"],
             "daemon": ["daemon", "--listen", name, "--data-dir", tmp_path / "d"],
             "daemon upload": ["daemon", "--listen", "127.0.0.1:0", "--upload-listen", name,
                               "--data-dir", tmp_path / "d"],
             "supernode gossip": ["supernode", "--gossip-listen", name, "--data-dir", tmp_path / "s"]
             + gossip,
             "bench upload": ["bench", "http://127.0.0.1:9/f.bin", "--supernode", "127.0.0.1:9",
                              "--upload-listen", name]}
    for case, argv in cases.items():
        proc = subprocess.run(["unshare", "--net", sys.executable, pyz] + [str(a) for a in argv],
                              capture_output=True, text=True, timeout=30)
        line = one_line_error(proc, 2)
        assert "no-such-host.invalid" in line and "does not resolve" in line, (case, line)


def test_get_to_stdout_on_a_full_disk_is_one_line_exit_6(pyz, origin, tmp_path):
    src = origin.add("f.bin", content(2 * MiB, seed=6))
    full = tmp_path / "full"
    _char_device(full, 7)
    with open(str(full), "wb") as stdout:
        proc = subprocess.run([sys.executable, pyz, "get", src.url, "-o", "-", "--no-daemon",
                               "--seed-for", "0", "--data-dir", str(tmp_path / "data")],
                              stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=TIMEOUT_S)
    line = one_line_error(proc, 6)
    assert "stdout" in line and "No space left" in line


@pytest.fixture()
def tiny_disk(tmp_path):
    """A real filesystem with room for 1 MiB: a tmpfs mounted under tmp_path (root only)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, timeout=10)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): %s" % done.stderr.decode().strip())
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10)


@pytest.mark.time_limit(60)
def test_get_onto_a_full_filesystem_is_one_line_exit_6_and_leaves_nothing(pyz, origin, tmp_path,
                                                                          tiny_disk):
    src = origin.add("f.bin", content(3 * MiB, seed=17))
    target = tiny_disk / "f.bin"
    line = one_line_error(get(pyz, src.url, target, tmp_path), 6)
    assert str(target) in line and "No space left" in line, line
    assert os.listdir(str(tiny_disk)) == []
    with open(str(tiny_disk / "out.bin"), "wb") as stdout:   # `-o - > FILE` on that disk
        proc = subprocess.run([sys.executable, pyz, "get", src.url, "-o", "-", "--no-daemon",
                               "--seed-for", "0", "--data-dir", str(tmp_path / "data")],
                              stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=TIMEOUT_S)
    line = one_line_error(proc, 6)
    assert "stdout" in line and "No space left" in line, line


def test_the_zipapp_code_names_its_files_as_inside_the_archive(pyz):
    """A traceback in a bug report points at dfly.pyz/dfly/..., not a temporary build folder."""
    with zipfile.ZipFile(pyz) as archive:
        bundle = archive.read("__bytecode__/" + sys.implementation.cache_tag)
        legacy = archive.read("dfly/cli.pyc")
    _, _, modules = marshal.loads(bundle)
    names = {name: marshal.loads(code).co_filename for name, (_, code) in modules.items()}
    assert names["dfly.cli"] == "dfly.pyz/dfly/cli.py"
    assert all(f.startswith("dfly.pyz/dfly/") for f in names.values()), names
    assert marshal.loads(legacy[16:]).co_filename == "dfly.pyz/dfly/cli.py"


# --timeout is a bound ----------------------------------------------------------------

class Running:
    """A long-running dfly command on 127.0.0.1:0, its address read from its log."""

    def __init__(self, pyz, command, data_dir, *more):
        self.data_dir = data_dir
        self.proc = subprocess.Popen([sys.executable, pyz, command, "--listen", "127.0.0.1:0",
                                      "--data-dir", str(data_dir)] + list(more),
                                     stderr=subprocess.PIPE, text=True)
        self.address = None
        found = threading.Event()

        def watch():
            for line in self.proc.stderr:
                if self.address is None and "listening on " in line:
                    self.address = line.split("listening on ")[1].split(",")[0].split(" ")[0]
                    found.set()
        threading.Thread(target=watch, name=command + "-log", daemon=True).start()
        if not found.wait(30):
            self.stop()
            raise AssertionError("%s reported no address" % command)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


@pytest.fixture()
def supernode(pyz, tmp_path):
    running = Running(pyz, "supernode", tmp_path / "supernode")
    yield running
    running.stop()


LIMIT_S = 2.0
SLACK_S = 1.2   # the interpreter's start, on a loaded machine, and the "fraction of a second"


def _timed_get(pyz, url, output, tmp_path, *more):
    started = time.monotonic()
    proc = get(pyz, url, output, tmp_path, "--timeout", "%gs" % LIMIT_S, *more)
    return proc, time.monotonic() - started


@pytest.mark.time_limit(60)
def test_timeout_through_a_supernode_ends_the_process_at_the_limit(pyz, origin, supernode, tmp_path):
    src = origin.add("f.bin", content(8 * MiB, seed=7))
    # a piece at this rate takes longer than the limit: without the bound, get waits for it
    proc, elapsed = _timed_get(pyz, src.url, tmp_path / "f.bin", tmp_path, "--supernode",
                               supernode.address, "--rate-limit", "1M")
    line = one_line_error(proc, 5)
    assert elapsed < LIMIT_S + SLACK_S, "--timeout 2s took %.1fs" % elapsed
    assert "2s" in line and " of 8.0 MiB" in line, line
    assert leftovers(str(tmp_path)) == [] and not (tmp_path / "f.bin").exists()


@pytest.mark.time_limit(60)
def test_timeout_from_the_source_ends_the_process_at_the_limit(pyz, origin, tmp_path):
    src = origin.add("f.bin", content(8 * MiB, seed=8))
    proc, elapsed = _timed_get(pyz, src.url, tmp_path / "f.bin", tmp_path, "--rate-limit", "100K")
    line = one_line_error(proc, 5)
    assert elapsed < LIMIT_S + SLACK_S, "--timeout 2s took %.1fs" % elapsed
    assert "(--timeout 2s) after " in line and "MiB of 8.0 MiB" in line and "bytes" not in line, line
    assert leftovers(str(tmp_path)) == [] and not (tmp_path / "f.bin").exists()


@pytest.mark.time_limit(60)
def test_timeout_bounds_the_waits_for_a_daemon_and_a_seeder_that_never_answer(
        pyz, origin, supernode, tmp_path, held_port):
    # Something accepts at the daemon's address and at the data dir's seeder socket
    # and never answers (a hung daemon, a stopped seeder): get asks both before its
    # deadline is armed, and waited 1 s and 2 s for them whatever --timeout said.
    src = origin.add("f.bin", content(8 * MiB, seed=15))
    data = tmp_path / "data"
    (data / "peer").mkdir(parents=True)
    seeder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    seeder.bind(str(data / "peer" / "seeder.sock"))
    seeder.listen(4)
    limit_s = 0.3
    try:
        started = time.monotonic()
        proc = dfly(pyz, "get", src.url, "-o", tmp_path / "f.bin", "--daemon", held_port,
                    "--supernode", supernode.address, "--rate-limit", "1M", "--data-dir", data,
                    "--timeout", "%gs" % limit_s)
        elapsed = time.monotonic() - started
    finally:
        seeder.close()
    one_line_error(proc, 5)
    assert elapsed < limit_s + SLACK_S, "--timeout %gs took %.1fs" % (limit_s, elapsed)
    assert leftovers(str(tmp_path)) == [] and not (tmp_path / "f.bin").exists()


# output that adds up ------------------------------------------------------------------

def _on_a_terminal(argv, timeout=TIMEOUT_S) -> (int, str):
    """Run with stderr on a pseudo-terminal, as a user at a shell sees it: (exit code, what
    the terminal showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable] + [str(a) for a in argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    shown = bytearray()
    while True:   # until the process closes its end (EIO on Linux, b"" elsewhere)
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        shown += data
    os.close(master)
    return proc.wait(timeout), shown.decode("utf-8", "replace")


def test_the_progress_bar_from_the_source_shows_percent_and_eta(pyz, origin, tmp_path):
    src = origin.add("f.bin", content(4 * MiB, seed=9))
    code, shown = _on_a_terminal([pyz, "get", src.url, "-o", tmp_path / "f.bin", "--no-daemon",
                                  "--seed-for", "0", "--rate-limit", "4M",
                                  "--data-dir", tmp_path / "data"])
    assert code == 0, shown
    assert "100%" in shown and re.search(r"ETA \d+s", shown), shown
    assert "4.0 MiB from source" in shown and "from local cache" in shown


@pytest.mark.time_limit(60)
def test_a_rate_limit_holds_from_the_first_second(pyz, origin, tmp_path):
    src = origin.add("f.bin", content(3 * MiB, seed=10))
    proc = get(pyz, src.url, tmp_path / "f.bin", tmp_path, "--rate-limit", "2M", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    rate = result["length"] / result["elapsed_s"]
    assert rate <= 2 * MiB * 1.1, "--rate-limit 2M averaged %.1f MiB/s" % (rate / MiB)


@pytest.fixture()
def daemon(pyz, tmp_path):
    # no supernode: it fetches from the source into its cache
    running = Running(pyz, "daemon", tmp_path / "daemon", "--upload-listen", "127.0.0.1:0")
    yield running
    running.stop()


def _via_daemon(daemon) -> list:
    """The flags a get needs to hand its download to `daemon` (its token, when it has one)."""
    token = os.path.join(str(daemon.data_dir), "daemon", "handoff.token")
    return ["--daemon", daemon.address] + (["--daemon-token", token] if os.path.exists(token) else [])


def _handed(pyz, daemon, url, output, *more):
    return dfly(pyz, "get", url, "-o", output, *_via_daemon(daemon), *more)


@pytest.mark.time_limit(60)
def test_a_hand_off_the_daemon_had_cached_names_the_local_cache(pyz, origin, daemon, tmp_path):
    src = origin.add("f.bin", content(2 * MiB, seed=11))
    first = _handed(pyz, daemon, src.url, tmp_path / "a.bin")
    assert first.returncode == 0 and "2.0 MiB from source" in first.stderr, first.stderr
    again = _handed(pyz, daemon, src.url, tmp_path / "b.bin", "--json")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["bytes_from_cache"] == 2 * MiB and result["bytes_from_source"] == 0
    code, shown = _on_a_terminal([pyz, "get", src.url, "-o", tmp_path / "c.bin"] + _via_daemon(daemon))
    assert code == 0, shown
    assert "2.0 MiB from local cache" in shown and "local cache 2.0 MiB" in shown, shown
    assert origin.requests("f.bin") == 1


# one set of rules for URLs and addresses -----------------------------------------------

@pytest.mark.time_limit(90)
def test_urls_and_addresses_get_the_same_answer_on_every_path(pyz, origin, supernode, daemon, tmp_path):
    src = origin.add("f.bin", content(1 * MiB, seed=12))
    paths = {"alone": ["--no-daemon", "--seed-for", "0"],
             "supernode": ["--no-daemon", "--seed-for", "0", "--supernode", supernode.address],
             "daemon": _via_daemon(daemon)}
    bad = {"not a URL": ["notaurl"], "file URL naming a host": ["file://h%s" % (tmp_path / "x")],
           "a scheme dfly does not read": ["gopher://127.0.0.1/f.bin"],
           # (a name the hosts file resolves: a typo like it must not send a DNS query off the host)
           "supernode without port": [src.url, "--supernode", "localhost"],
           "supernode without host": [src.url, "--supernode", ":8002"]}
    (tmp_path / "x").write_bytes(b"a local file")
    for path, flags in paths.items():
        for mistake, argv in bad.items():
            proc = dfly(pyz, "get", *argv, "-o", tmp_path / "out", "--data-dir", tmp_path / "g", *flags)
            line = one_line_error(proc, 2)
            assert not (tmp_path / "out").exists(), (path, mistake, line)
        # A file:// URL is valid, but read only under a --source-file-root: none here.
        proc = dfly(pyz, "get", "file://%s" % (tmp_path / "x"), "-o", tmp_path / "out",
                    "--data-dir", tmp_path / "g", *flags)
        assert "source-file-root" in one_line_error(proc, 9), path
        assert not (tmp_path / "out").exists(), path
    assert origin.requests("f.bin") == 0


@pytest.mark.time_limit(60)
def test_a_get_given_source_settings_reads_the_source_itself_rather_than_hand_off(
        pyz, daemon, tmp_path):
    # The daemon has source settings of its own (none here): handed there, a file://
    # URL would be refused though this command line names its root.
    root = tmp_path / "share"
    root.mkdir()
    (root / "f.bin").write_bytes(content(300_000, seed=14))
    proc = _handed(pyz, daemon, "file://%s" % (root / "f.bin"), tmp_path / "out.bin",
                   "--source-file-root", root, "--seed-for", "0", "--data-dir", tmp_path / "g")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.bin").read_bytes() == (root / "f.bin").read_bytes()


# errors name the user's file; digests read the same on every path ----------------------

def _file_size_limit(limit: int):
    def apply():   # in the child: writes past `limit` fail with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.time_limit(60)
def test_a_write_error_names_the_users_file_on_every_path(pyz, origin, supernode, tmp_path):
    src = origin.add("f.bin", content(4 * MiB, seed=13))
    for path, flags in {"alone": [], "supernode": ["--supernode", supernode.address]}.items():
        target = tmp_path / ("%s.bin" % path)
        proc = subprocess.run([sys.executable, pyz, "get", src.url, "-o", str(target), "--no-daemon",
                               "--seed-for", "0", "--data-dir", str(tmp_path / "data")] + flags,
                              capture_output=True, text=True, timeout=TIMEOUT_S,
                              preexec_fn=_file_size_limit(MiB))
        line = one_line_error(proc, 6)
        assert re.match(r"dfly: error: cannot (write|size) %s: " % re.escape(str(target)), line), line
        assert leftovers(str(tmp_path)) == [] and not target.exists()


@pytest.mark.time_limit(60)
def test_a_digest_mismatch_reads_the_same_on_every_path(pyz, origin, supernode, daemon, tmp_path):
    src = origin.add("f.bin", content(1 * MiB, seed=14))
    wrong = "sha256:" + "0" * 64
    lines = {}
    for path, flags in {"alone": [], "supernode": ["--supernode", supernode.address]}.items():
        proc = get(pyz, src.url, tmp_path / "f.bin", tmp_path, "--digest", wrong, *flags)
        lines[path] = one_line_error(proc, 4)
    lines["daemon"] = one_line_error(_handed(pyz, daemon, src.url, tmp_path / "f.bin", "--digest", wrong), 4)
    expected = "dfly: error: content does not match the expected digest %s (got %s)" % (wrong, src.digest)
    assert lines == {"alone": expected, "supernode": expected, "daemon": expected}
    assert leftovers(str(tmp_path)) == [] and not (tmp_path / "f.bin").exists()


def test_demo_with_no_peers_is_a_usage_error(pyz, tmp_path):
    proc = dfly(pyz, "demo", "--peers", "0", "--size", "1M", "--data-dir", tmp_path / "demo")
    assert proc.returncode == 2 and "--peers" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "demo").exists()


# one detached seeder per user and data dir ----------------------------------------------

def _processes_naming(text: str) -> list:
    """Pids whose command line names `text` (a test's own data dir)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if text.encode() in cmdline:
                pids.append(int(name))
    return pids


def _alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.time_limit(120)
def test_gets_through_a_supernode_leave_one_seeder_that_can_be_listed_and_stopped(
        pyz, origin, supernode, tmp_path):
    files = [origin.add("f%d.bin" % i, content(2 * MiB, seed=20 + i)) for i in range(3)]
    data = str(tmp_path / "data")
    common = ["--supernode", supernode.address, "--no-daemon", "--upload-listen", "127.0.0.1:0",
              "--data-dir", data]
    try:
        # (--timeout too: its watch must not keep the seeder spare from being forked)
        code, shown = _on_a_terminal([pyz, "get", files[0].url, "-o", tmp_path / "f0.bin",
                                      "--timeout", "1m"] + common)
        assert code == 0, shown
        assert "still serving to peers for 5m; --seed-for 0 to stop" in shown, shown
        for i in (1, 2):
            proc = dfly(pyz, "get", files[i].url, "-o", tmp_path / ("f%d.bin" % i), *common)
            assert proc.returncode == 0, proc.stderr
        listing = json.loads(dfly(pyz, "seeders", "--json", "--data-dir", data).stdout)
        assert sorted(t["file"] for t in listing["tasks"]) == [str(tmp_path / ("f%d.bin" % i))
                                                               for i in range(3)]
        assert _processes_naming(data) == [listing["pid"]], "one seeder, and nothing else left"
        with open("/proc/%d/cmdline" % listing["pid"], "rb") as f:
            assert b"\0get\0" in f.read(), "the seeder is the forked spare, no second interpreter"
        # a file a later get handed over is served by the one seeder
        again = dfly(pyz, "get", files[2].url, "-o", tmp_path / "again.bin", "--json", "--seed-for", "0",
                     *common[:-1], str(tmp_path / "other"))
        assert json.loads(again.stdout)["bytes_from_peers"] == 2 * MiB, again.stderr
        shown = dfly(pyz, "seeders", "--data-dir", data).stdout
        assert "serves 3 files" in shown and str(tmp_path / "f1.bin") in shown, shown
        stopped = dfly(pyz, "seeders", "--stop", "--data-dir", data)
        assert stopped.returncode == 0 and str(listing["pid"]) in stopped.stdout
        wait_until(lambda: not _alive(listing["pid"]), 15, message="the seeder stopped")
        none = dfly(pyz, "seeders", "--data-dir", data)
        assert none.returncode == 0 and "no seeder runs" in none.stdout   # README: 0 also when none runs
        usage = dfly(pyz, "seeders", "--stop", "--nonsense", "--data-dir", data)
        assert usage.returncode == 2 and "--nonsense" in usage.stderr and "Traceback" not in usage.stderr
        assert os.listdir(os.path.join(data, "peer", "seeds")) == []
    finally:
        dfly(pyz, "seeders", "--stop", "--data-dir", data)
        for pid in _processes_naming(data):
            os.kill(pid, 9)


@pytest.mark.time_limit(90)
def test_the_daemons_hand_off_follows_the_same_rules_for_what_is_at_the_path(pyz, origin, daemon,
                                                                             tmp_path):
    data = content(2 * MiB, seed=30)
    src = origin.add("f.bin", data)
    null = tmp_path / "null"
    _char_device(null, 3)
    assert _handed(pyz, daemon, src.url, null).returncode == 0
    assert stat.S_ISCHR(os.lstat(str(null)).st_mode), "the daemon replaced the device with a file"
    fifo = tmp_path / "pipe"
    os.mkfifo(str(fifo))
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), name="fifo-reader",
                              daemon=True)
    reader.start()
    assert _handed(pyz, daemon, src.url, fifo).returncode == 0
    reader.join(TIMEOUT_S)
    assert received == [data] and stat.S_ISFIFO(os.lstat(str(fifo)).st_mode)
    (tmp_path / "real").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "real" / "f.bin")
    assert _handed(pyz, daemon, src.url, link).returncode == 0
    assert os.path.islink(str(link)) and (tmp_path / "real" / "f.bin").read_bytes() == data
    folder = tmp_path / "folder"
    folder.mkdir()
    assert "is a directory" in one_line_error(_handed(pyz, daemon, src.url, folder), 6)
    assert leftovers(str(tmp_path)) == [] and leftovers(str(tmp_path / "real")) == []


def _daemon_stats(daemon) -> dict:
    with urllib.request.urlopen("http://%s/v1/stats" % daemon.address, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.time_limit(60)
def test_timeout_through_the_daemon_ends_the_process_at_the_limit_and_writes_nothing_later(
        pyz, origin, daemon, tmp_path):
    src = origin.add("f.bin", content(2 * MiB, seed=31))
    origin.fault("f.bin", chunk_delay_s=0.4)   # about 3 s for the whole file
    target = tmp_path / "f.bin"
    started = time.monotonic()
    proc = _handed(pyz, daemon, src.url, target, "--timeout", "%gs" % LIMIT_S)
    elapsed = time.monotonic() - started
    line = one_line_error(proc, 5)
    # the daemon says how far its download got, in the words of every other path
    assert re.search(r"download timed out \(--timeout 2s\) after [\d.]+ (B|KiB|MiB) of 2\.0 MiB$",
                     line), line
    assert elapsed < LIMIT_S + SLACK_S, "--timeout 2s took %.1fs" % elapsed
    # the daemon finishes the download for its cache, and leaves the output alone
    wait_until(lambda: _daemon_stats(daemon)["downloads"] == 1, 30, message="the cache filled")
    assert not target.exists() and leftovers(str(tmp_path)) == []


# secrets in URLs stay out of logs, errors and meta files --------------------------------

SECRETS = ("SECRET-token-1", "SECRET-signature-2", "SECRET-sig-3")


def _signed(url: str) -> str:
    return "%s?token=%s&X-Amz-Signature=%s&sig=%s" % ((url,) + SECRETS)


def _files_under(folder) -> dict:
    out = {}
    for dirpath, _, names in os.walk(str(folder)):
        for name in names:
            path = os.path.join(dirpath, name)
            if name.endswith((".log", ".json")) and os.path.isfile(path):
                with open(path, "rb") as f:
                    out[path] = f.read().decode("utf-8", "replace")
    return out


@pytest.mark.time_limit(90)
def test_secrets_in_a_url_reach_no_log_line_error_or_meta_file(pyz, origin, supernode, daemon, tmp_path):
    src = origin.add("f.bin", content(1 * MiB, seed=32))
    missing = origin.url("missing.bin")
    via = ["--supernode", supernode.address, "--no-daemon", "--seed-for", "0",
           "--data-dir", tmp_path / "g"]
    shown = []
    ok = dfly(pyz, "get", _signed(src.url), "-o", tmp_path / "f.bin", *via)
    assert ok.returncode == 0, ok.stderr
    for flags in (via, ["--no-daemon", "--seed-for", "0"], _via_daemon(daemon)):
        proc = dfly(pyz, "get", _signed(missing), "-o", tmp_path / "m.bin", *flags)
        line = one_line_error(proc, 3)
        assert "token=***" in line, line
        shown.append(proc.stderr)
    written = _files_under(tmp_path / "supernode")
    written.update(_files_under(daemon_logs(tmp_path)))
    assert any(name.endswith("meta.json") for name in written), sorted(written)
    assert any("missing.bin" in text for text in written.values()), "the failure was logged"
    for where, text in list(written.items()) + [("stderr", s) for s in shown]:
        assert not any(secret in text for secret in SECRETS), (where, text[-2000:])


def daemon_logs(tmp_path):
    return tmp_path / "daemon" / "logs"


def test_a_source_cut_short_is_told_in_human_units_on_every_path(pyz, origin, supernode, tmp_path):
    src = origin.add("f.bin", content(2 * MiB, seed=33))
    origin.fault("f.bin", short_by=MiB // 2)   # Content-Length promises half a MiB more than sent
    for flags in ([], ["--supernode", supernode.address]):
        line = one_line_error(get(pyz, src.url, tmp_path / "f.bin", tmp_path, *flags), 3)
        assert "2.0 MiB of 2.5 MiB" in line and "bytes" not in line, (flags, line)


# get --trace -------------------------------------------------------------------------
def test_get_trace_writes_the_downloads_record(pyz, origin, tmp_path):
    src = origin.add("traced.bin", content(3 * MiB, seed=9))
    proc = get(pyz, src.url, tmp_path / "out.bin", tmp_path, "--digest", src.digest,
               "--trace", tmp_path / "trace.json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "trace.json").read_text())
    kinds = [e["kind"] for e in record["events"]]
    assert kinds == ["process_start", "source_fallback", "digest_check", "finished"]
    assert record["events"][2]["ok"] is True and record["url"] == src.url
    assert sorted(os.listdir(str(tmp_path))) == ["origin", "out.bin", "trace.json"]   # no temp left


def test_get_trace_to_a_bad_path_is_one_line_exit_6_before_downloading(pyz, origin, tmp_path):
    src = origin.add("untraced.bin", content(MiB, seed=9))
    for bad in (tmp_path / "missing" / "t.json", tmp_path):
        proc = get(pyz, src.url, tmp_path / "out.bin", tmp_path, "--trace", bad)
        assert "trace file" in one_line_error(proc, 6)
    assert origin.requests("untraced.bin") == 0 and not (tmp_path / "out.bin").exists()
