"""Daemons of the built zipapp form a gossip cluster without any supernode:
ten members on distinct loopback addresses, a SIGKILLed one known dead by all,
a member under another key never seen."""
import json
import signal
import time
import urllib.request

import pytest

from tests.helpers import wait_until
from tests.processes import Process

MEMBERS = 10


def _daemon(pyz, tmp_path, i, key, join):
    host = "127.0.0.%d" % (20 + i)
    return Process(pyz, "daemon", "--listen", host + ":0", "--data-dir", str(tmp_path / ("d%d" % i)),
                   "--registry-mirror", "", "--gossip", "--gossip-key-file", str(key),
                   "--gossip-listen", host + ":0", "--gossip-profile", "fast",
                   *(["--join", join] if join else []))


def _members(proc):
    with urllib.request.urlopen("http://%s/v1/members" % proc.address, timeout=5) as r:
        return {m["name"]: m["state"] for m in json.loads(r.read())["members"]}


def _gossip_address(proc):
    with urllib.request.urlopen("http://%s/v1/members" % proc.address, timeout=5) as r:
        return json.loads(r.read())["me"]


@pytest.mark.time_limit(120)
def test_ten_daemons_gossip_and_all_learn_of_a_killed_one(pyz, tmp_path):
    key, other_key = tmp_path / "key", tmp_path / "other-key"
    key.write_text("a cluster key of more than sixteen characters\n")
    other_key.write_text("someone else's key, also long enough\n")
    procs = []
    try:
        procs.append(_daemon(pyz, tmp_path, 0, key, None))
        seed = _gossip_address(procs[0])
        procs += [_daemon(pyz, tmp_path, i, key, seed) for i in range(1, MEMBERS)]
        stranger = _daemon(pyz, tmp_path, MEMBERS, other_key, seed)
        procs.append(stranger)
        cluster = procs[:MEMBERS]
        names = [_gossip_address(p) for p in cluster]
        wait_until(lambda: all(_members(p) == {n: "alive" for n in names} for p in cluster), timeout=30,
                   message="every member alive in every member's view")
        victim = cluster[4]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        killed_at = time.monotonic()
        rest = [p for p in cluster if p is not victim]
        wait_until(lambda: all(_members(p)[names[4]] == "dead" for p in rest), timeout=30,
                   message="the killed member dead in every view")
        print("killed member known dead everywhere after %.1f s" % (time.monotonic() - killed_at))
        assert set(_members(stranger)) == {_gossip_address(stranger)}
        assert all(_gossip_address(stranger) not in _members(p) for p in rest)
    finally:
        for p in procs:
            if p.proc.poll() is None:
                assert p.stop() == 0


@pytest.mark.parametrize("args, says", [
    ([], "--gossip needs --gossip-key-file"),
    (["--gossip-key-file", "/nonexistent/key"], "No such file"),
    (["--gossip-key-file", "SHORT"], "at least 16 characters"),
])
def test_gossip_without_a_usable_key_is_a_one_line_usage_error(pyz, tmp_path, args, says):
    import subprocess
    import sys
    (tmp_path / "SHORT").write_text("short\n")
    args = [str(tmp_path / "SHORT") if a == "SHORT" else a for a in args]
    proc = subprocess.run([sys.executable, pyz, "daemon", "--listen", "127.0.0.1:0", "--registry-mirror", "",
                           "--data-dir", str(tmp_path / "d"), "--gossip", "--gossip-listen", "127.0.0.1:0",
                           *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
