"""Daemons of the built zipapp form a gossip cluster without any supernode: ten
members on distinct loopback addresses fetch a new file at once with one source
fetch, finish a second one when the task's home is SIGKILLed mid-transfer, learn
that a killed member is dead, and never see a member under another key."""
import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from dfly.demo import CountingOrigin, write_random_file
from tests.helpers import sha256_file, wait_until
from tests.processes import Process

MEMBERS = 10
SIZE = 64 << 20


def _daemon(pyz, tmp_path, i, key, join):
    host = "127.0.0.%d" % (20 + i)
    return Process(pyz, "daemon", "--listen", host + ":0", "--data-dir", str(tmp_path / ("d%d" % i)),
                   "--registry-mirror", "", "--gossip", "--gossip-key-file", str(key),
                   "--gossip-listen", host + ":0", "--gossip-profile", "fast",
                   "--upload-listen", "127.0.0.1:0", "--total-rate-limit", "12M",
                   *(["--join", join] if join else []))


def _api(proc, path):
    with urllib.request.urlopen("http://%s%s" % (proc.address, path), timeout=5) as r:
        return json.loads(r.read())


def _members(proc):
    return {m["name"]: m["state"] for m in _api(proc, "/v1/members")["members"]}


def _scheduler_of(proc):
    me = _api(proc, "/v1/members")["me"]
    return [m["meta"]["sn"] for m in _api(proc, "/v1/members")["members"] if m["name"] == me][0]


def _serving(scheduler):
    try:
        with urllib.request.urlopen("http://%s/v1/tasks" % scheduler, timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


def _serves(scheduler, path):
    return any(t.get("url", "").endswith(path) for t in (_serving(scheduler) or {}).get("tasks", []))


def _gets(pyz, tmp_path, daemons, url, tag):
    procs = []
    for i, d in enumerate(daemons):
        token = tmp_path / ("d%d" % d.index) / "daemon" / "handoff.token"
        procs.append(subprocess.Popen(
            [sys.executable, pyz, "get", url, "-o", str(tmp_path / ("%s%d.bin" % (tag, i))), "--json",
             "--daemon", d.address, "--daemon-token", str(token)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _digest(path):
    return "sha256:" + sha256_file(str(path))


def _finish(procs):
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        results.append(json.loads(stdout))
    return results


@pytest.mark.time_limit(600)
def test_ten_daemons_distribute_without_a_supernode_and_survive_losing_the_home(pyz, tmp_path):
    key, other_key = tmp_path / "key", tmp_path / "other-key"
    key.write_text("a cluster key of more than sixteen characters\n")
    other_key.write_text("someone else's key, also long enough\n")
    (tmp_path / "origin").mkdir()
    origin = CountingOrigin(str(tmp_path / "origin"))
    digests = {name: write_random_file(str(tmp_path / "origin" / name), SIZE) for name in ("a.bin", "b.bin")}
    procs = []
    try:
        procs.append(_daemon(pyz, tmp_path, 0, key, None))
        seed = _api(procs[0], "/v1/members")["me"]
        procs += [_daemon(pyz, tmp_path, i, key, seed) for i in range(1, MEMBERS)]
        for i, p in enumerate(procs):
            p.index = i
        stranger = _daemon(pyz, tmp_path, MEMBERS, other_key, seed)
        procs.append(stranger)
        cluster = procs[:MEMBERS]
        names = [_api(p, "/v1/members")["me"] for p in cluster]
        wait_until(lambda: all(_members(p) == {n: "alive" for n in names} for p in cluster), timeout=60,
                   message="every member alive in every member's view")

        # A cold start: every member asks at once; only the task's home reads the source.
        results = _finish(_gets(pyz, tmp_path, cluster, origin.url("a.bin"), "a"))
        assert all(_digest(tmp_path / ("a%d.bin" % i)) == digests["a.bin"] for i in range(MEMBERS))
        assert origin.sent_bytes <= 1.1 * SIZE, origin.sent_bytes
        assert sum(r["bytes_from_peers"] for r in results) > 0

        # The home dies mid-transfer: the next home takes the task over, everyone finishes.
        before = origin.sent_bytes
        gets = _gets(pyz, tmp_path, cluster[1:], origin.url("b.bin"), "b")
        schedulers = {_scheduler_of(p): p for p in cluster}   # the home may be one that is not getting
        home = wait_until(lambda: next((p for sn, p in schedulers.items() if _serves(sn, "/b.bin")), None),
                          timeout=60, message="the home of b.bin serving it")
        home.proc.send_signal(signal.SIGKILL)
        home.proc.wait(10)
        survivors = [i for i, p in enumerate(cluster[1:]) if p is not home]
        _finish([gets[i] for i in survivors])
        assert all(_digest(tmp_path / ("b%d.bin" % i)) == digests["b.bin"] for i in survivors)
        print("origin bytes: a.bin %.2f x, b.bin (home killed) %.2f x"
              % (before / SIZE, (origin.sent_bytes - before) / SIZE))

        # A killed member is dead in every other view; the stranger was never seen.
        rest = [p for p in cluster if p is not home]
        victim = rest[-1]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        killed_at = time.monotonic()
        rest = rest[:-1]
        victim_name = names[cluster.index(victim)]
        wait_until(lambda: all(_members(p)[victim_name] == "dead" for p in rest), timeout=60,
                   message="the killed member dead in every view")
        print("killed member known dead everywhere after %.1f s" % (time.monotonic() - killed_at))
        stranger_name = _api(stranger, "/v1/members")["me"]
        assert set(_members(stranger)) == {stranger_name}
        assert all(stranger_name not in _members(p) for p in rest)
    finally:
        for p in procs:
            if p.proc.poll() is None:
                p.stop()
        origin.stop()


@pytest.mark.parametrize("args, says", [
    ([], "--gossip needs --gossip-key-file"),
    (["--gossip-key-file", "/nonexistent/key"], "No such file"),
    (["--gossip-key-file", "SHORT"], "at least 16 characters"),
])
def test_gossip_without_a_usable_key_is_a_one_line_usage_error(pyz, tmp_path, args, says):
    (tmp_path / "SHORT").write_text("short\n")
    args = [str(tmp_path / "SHORT") if a == "SHORT" else a for a in args]
    proc = subprocess.run([sys.executable, pyz, "daemon", "--listen", "127.0.0.1:0", "--registry-mirror", "",
                           "--data-dir", str(tmp_path / "d"), "--gossip", "--gossip-listen", "127.0.0.1:0",
                           *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
