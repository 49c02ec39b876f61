"""Supernode HA with real processes: three supernodes that know each other,
SIGKILLed and restarted under a swarm of clients, against a real origin.

Cluster members must know each other's addresses before they start, so this
file reserves loopback ports (helpers.reserve_ports) instead of letting each
process pick: the one place the suite names ports up front.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from helpers import MiB, content, reserve_ports, run_all, sha256_file, wait_until
from origin import Fault, Origin

from dfly import Client
from dfly.errors import Forbidden
from dfly.protocol import signing
from dfly.protocol.task import task_id
from dfly.supernode.client import SupernodeClient
from dfly.supernode.cluster import rendezvous_owner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Member:
    """`python -m dfly supernode` as a cluster member; start(), kill(), stop()."""

    def __init__(self, address, members, data_dir, secret="s3cret"):
        self.address, self.members, self.data_dir, self.secret = address, members, data_dir, secret
        self.proc = None

    def start(self):
        cmd = [sys.executable, "-m", "dfly", "supernode", "--listen", self.address,
               "--cluster", ",".join(self.members), "--cluster-secret", self.secret,
               "--member-dead-after", "1.5", "--adopt-grace", "1", "--data-dir", self.data_dir]
        self.proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=ROOT),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = SupernodeClient(self.address, timeout_s=1)
        try:
            wait_until(lambda: _answers(client), timeout=15, message="supernode %s up" % self.address)
        finally:
            client.close()
        return self

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _answers(client):
    try:
        return client.cluster() is not None
    except Exception:
        return False


@pytest.fixture
def cluster(tmp_path):
    addresses = reserve_ports(3)
    members = [Member(a, addresses, str(tmp_path / ("sn%d" % i))) for i, a in enumerate(addresses)]
    yield members
    for m in members:
        m.stop()


def _start_all(cluster):
    """Start every member and wait until each sees all the others; their addresses."""
    for m in cluster:
        m.start()
    addresses = [m.address for m in cluster]
    wait_until(lambda: all(_all_alive(a, len(cluster)) for a in addresses), timeout=15)
    return addresses


def _all_alive(address, n):
    client = SupernodeClient(address, timeout_s=1)
    try:
        return sum(m["alive"] for m in client.cluster()["members"]) == n
    except Exception:
        return False
    finally:
        client.close()


@pytest.mark.time_limit(90)
def test_download_survives_the_owner_supernode_killed_mid_transfer(cluster, origin, tmp_path):
    addresses = _start_all(cluster)
    size = 64 * MiB
    src = origin.add("big.bin", content(size, seed=11))
    origin.fault("big.bin", chunk_delay_s=0.01)        # ~25 MB/s: slow enough to die midway
    owner_addr = rendezvous_owner(task_id(src.url, digest=src.digest), addresses)
    owner = next(m for m in cluster if m.address == owner_addr)
    # Every client lists the members in another order: they reach different ones first.
    clients = [Client(addresses[i % 3:] + addresses[:i % 3], data_dir=str(tmp_path / ("p%d" % i)),
                      upload_listen="127.0.0.1:0", piece_timeout_s=5, failover_s=30)
               for i in range(6)]
    for i in range(6):
        os.makedirs(str(tmp_path / ("p%d" % i)), exist_ok=True)
    watcher = SupernodeClient(owner_addr, timeout_s=2)

    def kill_owner_midway():
        wait_until(lambda: any(t["pieces_written"] >= 4 for t in watcher.tasks()), timeout=30)
        owner.kill()
        return time.monotonic()

    try:
        outcomes = run_all([lambda c=c, i=i: (c.download(src.url, str(tmp_path / ("out%d" % i)),
                                                          digest=src.digest), time.monotonic())
                            for i, c in enumerate(clients)] + [kill_owner_midway], timeout=80)
    finally:
        watcher.close()
        for c in clients:
            c.close()
    errors = [e for _, e in outcomes if e is not None]
    assert not errors, errors
    killed_at = outcomes[-1][0]
    assert killed_at < min(ended for (_, ended), _ in outcomes[:-1])   # every download outlived it
    for i in range(6):
        assert sha256_file(str(tmp_path / ("out%d" % i))) == src.sha256
    results = [r for (r, _), _ in outcomes[:-1]]
    assert all(r.via == "p2p" for r in results)
    # The survivors resumed from where the owner stopped: the origin sent the file
    # about once (a piece or two cut twice, and what no surviving peer held).
    piece = 4 * MiB
    # Digests reach the other members before a piece is offered, so what the
    # origin sends twice is the piece being cut at the kill (and socket buffers).
    assert origin.body_bytes("big.bin") <= size + 2 * piece, origin.body_bytes("big.bin")
    survivors = [a for a in addresses if a != owner_addr]
    wait_until(lambda: not _all_alive(survivors[0], 3), timeout=15,   # processes: a loaded host is slow
               message="a survivor sees the killed owner dead")


@pytest.mark.time_limit(60)
def test_a_restarted_supernode_serves_its_cache_without_the_source(cluster, origin, tmp_path):
    member = cluster[0]
    member.members = [member.address]           # a cluster of one: it owns everything
    member.start()
    src = origin.add("f.bin", content(9 * MiB, seed=12))
    with Client([member.address], data_dir=str(tmp_path), upload_listen="127.0.0.1:0") as c:
        c.download(src.url, str(tmp_path / "a.bin"), digest=src.digest)
    sent = origin.body_bytes("f.bin")
    member.kill()
    member.start()
    with Client([member.address], data_dir=str(tmp_path), upload_listen="127.0.0.1:0") as c:
        result = c.download(src.url, str(tmp_path / "b.bin"), digest=src.digest)
    assert result.bytes_from_supernode == src.size
    assert origin.body_bytes("f.bin") == sent == src.size


@pytest.mark.time_limit(60)
def test_two_clients_at_two_members_at_once_cause_one_source_fetch(cluster, origin, tmp_path):
    addresses = _start_all(cluster)
    src = origin.add("f.bin", content(12 * MiB, seed=13))
    hold = origin.fault("f.bin", Fault(hold=threading.Event()))
    clients = []
    for i, address in enumerate(addresses):
        os.makedirs(str(tmp_path / ("p%d" % i)), exist_ok=True)
        clients.append(Client([address], data_dir=str(tmp_path / ("p%d" % i)),
                              upload_listen="127.0.0.1:0"))
    try:
        calls = [lambda c=c, i=i: c.download(src.url, str(tmp_path / ("o%d" % i)), digest=src.digest)
                 for i, c in enumerate(clients)]
        calls.append(lambda: (wait_until(lambda: origin.arrived("f.bin") >= 1 and
                                         _registered(addresses), timeout=10), hold.hold.set()))
        outcomes = run_all(calls, timeout=40)
    finally:
        for c in clients:
            c.close()
    assert [e for _, e in outcomes if e is not None] == []
    assert origin.requests("f.bin") == 1
    tid = task_id(src.url, digest=src.digest)
    owner = rendezvous_owner(tid, addresses)
    for address in addresses:   # the others sent their clients to the owner, and it alone fetched
        assert _has_task(address, tid) == (address == owner)
        status = SupernodeClient(address, timeout_s=2).cluster()
        assert [t["owner"] for t in status["tasks"] if t["task_id"] == tid] == [owner]


def _has_task(address, tid):
    client = SupernodeClient(address, timeout_s=2)
    try:
        return any(t["task_id"] == tid for t in client.tasks())
    finally:
        client.close()


def _registered(addresses):
    for address in addresses:
        client = SupernodeClient(address, timeout_s=1)
        try:
            if any(t["peers"] >= 3 for t in client.tasks()):
                return True
        finally:
            client.close()
    return False


@pytest.mark.time_limit(30)
def test_a_supernode_of_another_cluster_is_refused(cluster, tmp_path):
    good = cluster[0]
    good.start()
    client = SupernodeClient(good.address, timeout_s=2)
    try:
        with pytest.raises(Forbidden):
            client.ping(cluster[1].address, [], lambda method, path, body: signing.sign(
                signing.cluster_key("not-the-secret", good.members), cluster[1].address, method, path,
                body, time.time(), "ab" * 8))
        # Members count as alive when we start; unheard-from, they are dead soon after.
        wait_until(lambda: [m["alive"] for m in client.cluster()["members"] if not m["self"]]
                   == [False, False], timeout=10)
    finally:
        client.close()


@pytest.mark.time_limit(60)
def test_a_detached_seeder_announces_itself_to_the_new_owner(cluster, origin, tmp_path):
    addresses = _start_all(cluster)
    src = origin.add("f.bin", content(9 * MiB, seed=15))
    tid = task_id(src.url, digest=src.digest)
    owner = next(m for m in cluster if m.address == rendezvous_owner(tid, addresses))
    argv = [sys.executable, "-m", "dfly", "get", src.url, "-o", str(tmp_path / "seeded.bin"),
            "--digest", src.digest, "--seed-for", "15", "--upload-listen", "127.0.0.1:0",
            "--data-dir", str(tmp_path / "seeder"), "--no-daemon"]
    for address in addresses:
        argv += ["--supernode", address]
    done = subprocess.run(argv, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: all(_replicated(a, tid) for a in addresses if a != owner.address), timeout=10)
    owner.kill()
    survivors = [a for a in addresses if a != owner.address]
    new_owner = rendezvous_owner(tid, survivors)
    wait_until(lambda: _peers_of(new_owner, tid) >= 1, timeout=25,
               message="the seeder re-announced itself to %s" % new_owner)
    with Client(survivors, data_dir=str(tmp_path), upload_listen="127.0.0.1:0") as c:
        result = c.download(src.url, str(tmp_path / "late.bin"), digest=src.digest)
    assert result.bytes_from_peers == src.size
    assert origin.body_bytes("f.bin") == src.size


def _replicated(address, tid):
    client = SupernodeClient(address, timeout_s=1)
    try:
        return any(t["task_id"] == tid for t in client.cluster()["tasks"])
    finally:
        client.close()


def _peers_of(address, tid):
    client = SupernodeClient(address, timeout_s=1)
    try:
        return sum(t["peers"] for t in client.tasks() if t["task_id"] == tid)
    except Exception:
        return 0
    finally:
        client.close()


@pytest.mark.time_limit(90)
def test_a_takeover_against_a_changed_source_never_mixes_two_versions(cluster, origin, tmp_path):
    """The owner dies midway and the source changes meanwhile: the member taking
    over finds the file changed (If-Range gets a 200) and cuts it afresh; clients
    holding old pieces start over on the new content, none mixes the two."""
    addresses = _start_all(cluster)
    size = 32 * MiB
    old = origin.add("moving.bin", content(size, seed=16))
    origin.fault("moving.bin", chunk_delay_s=0.04)   # ~6 MB/s: the owner surely dies midway
    owner_addr = rendezvous_owner(task_id(old.url), addresses)   # no --digest: nothing else checks
    owner = next(m for m in cluster if m.address == owner_addr)
    clients = []
    for i in range(3):
        os.makedirs(str(tmp_path / ("p%d" % i)), exist_ok=True)
        clients.append(Client(addresses[i:] + addresses[:i], data_dir=str(tmp_path / ("p%d" % i)),
                              upload_listen="127.0.0.1:0", piece_timeout_s=5, failover_s=30))
    watcher = SupernodeClient(owner_addr, timeout_s=2)

    def change_and_kill_owner():
        wait_until(lambda: any(t["served_bytes"] >= 4 * MiB for t in watcher.tasks()), timeout=30)
        new = origin.add("moving.bin", content(size + 4321, seed=17))   # the owner's read goes on
        owner.kill()
        return new

    try:
        outcomes = run_all([lambda c=c, i=i: c.download(old.url, str(tmp_path / ("out%d" % i)))
                            for i, c in enumerate(clients)] + [change_and_kill_owner], timeout=80)
    finally:
        watcher.close()
        for c in clients:
            c.close()
    assert [e for _, e in outcomes if e is not None] == []
    new = outcomes[-1][0]
    for i in range(3):
        assert sha256_file(str(tmp_path / ("out%d" % i))) == new.sha256
    resume = origin.served("moving.bin")[-1]   # the taking-over member's conditional resume
    assert resume.headers.get("If-Range") == old.etag and resume.status == 200
    assert resume.body_bytes == new.size


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this host has no IPv6 loopback")
@pytest.mark.time_limit(90)
def test_a_cluster_of_ipv6_members_re_owns_a_task_when_its_owner_dies(tmp_path):
    origin = Origin(str(tmp_path / "origin6"), host="::1")
    addresses = reserve_ports(3, "::1")
    members = [Member(a, addresses, str(tmp_path / ("sn%d" % i))) for i, a in enumerate(addresses)]
    clients = []
    try:
        _start_all(members)
        status = SupernodeClient(addresses[0], timeout_s=2).cluster()
        assert status["me"] == addresses[0] and addresses[0].startswith("[::1]:")
        assert sorted(m["member"] for m in status["members"]) == sorted(addresses)
        size = 32 * MiB
        src = origin.add("big.bin", content(size, seed=16))
        origin.fault("big.bin", chunk_delay_s=0.02)   # ~12 MB/s: the owner dies midway
        owner_addr = rendezvous_owner(task_id(src.url, digest=src.digest), addresses)
        owner = next(m for m in members if m.address == owner_addr)
        for i in range(3):
            os.makedirs(str(tmp_path / ("p%d" % i)), exist_ok=True)
            clients.append(Client(addresses[i:] + addresses[:i], data_dir=str(tmp_path / ("p%d" % i)),
                                  upload_listen="[::1]:0", piece_timeout_s=5, failover_s=30))
        watcher = SupernodeClient(owner_addr, timeout_s=2)

        def kill_owner_midway():
            wait_until(lambda: any(t["pieces_written"] >= 3 for t in watcher.tasks()), timeout=30)
            owner.kill()
            watcher.close()

        outcomes = run_all([lambda c=c, i=i: c.download(src.url, str(tmp_path / ("out%d" % i)),
                                                         digest=src.digest)
                            for i, c in enumerate(clients)] + [kill_owner_midway], timeout=80)
    finally:
        for c in clients:
            c.close()
        for m in members:
            m.stop()
        origin.stop()
    assert [e for _, e in outcomes if e is not None] == []
    for i in range(3):
        assert sha256_file(str(tmp_path / ("out%d" % i))) == src.sha256
    assert all(r.via == "p2p" for r, _ in outcomes[:-1])
    assert origin.body_bytes("big.bin") <= size + 2 * 4 * MiB, origin.body_bytes("big.bin")


def test_a_cluster_without_a_secret_does_not_start(pyz, tmp_path):
    """Anyone could join a cluster without a secret and rewrite its piece digests."""
    out = subprocess.run([sys.executable, pyz, "supernode", "--listen", "127.0.0.1:0",
                          "--cluster", "127.0.0.1:0,127.0.0.1:1", "--data-dir", str(tmp_path / "sn")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr == ("dfly: error: a supernode cluster needs --cluster-secret "
                          "(the same on every member)\n")


@pytest.mark.time_limit(120)
def test_an_ftp_download_survives_the_owner_killed_mid_fetch_and_resumes_with_rest(
        cluster, tmp_path):
    from ftpserver import FtpOrigin
    ftp = FtpOrigin(str(tmp_path / "ftp"), rate_bytes_per_s=24 * MiB)   # slow enough to die midway
    try:
        addresses = _start_all(cluster)
        size = 64 * MiB
        data = content(size, seed=13)
        url = ftp.add("big.bin", data)
        owner_addr = rendezvous_owner(task_id(url), addresses)
        owner = next(m for m in cluster if m.address == owner_addr)
        clients = [Client(addresses[i % 3:] + addresses[:i % 3], data_dir=str(tmp_path / ("p%d" % i)),
                          upload_listen="127.0.0.1:0", piece_timeout_s=5, failover_s=30)
                   for i in range(4)]
        watcher = SupernodeClient(owner_addr, timeout_s=2)

        def kill_owner_midway():
            wait_until(lambda: any(t["pieces_written"] >= 4 for t in watcher.tasks()), timeout=30)
            owner.kill()

        try:
            outcomes = run_all([lambda c=c, i=i: c.download(url, str(tmp_path / ("out%d" % i)))
                                for i, c in enumerate(clients)] + [kill_owner_midway], timeout=100)
        finally:
            watcher.close()
            for c in clients:
                c.close()
        assert [e for _, e in outcomes if e is not None] == []
        want = sha256_file_of(data)
        assert all(sha256_file(str(tmp_path / ("out%d" % i))) == want for i in range(4))
        # Every transfer after the killed one began with REST at a piece boundary past
        # zero (the member that took over, and a single piece no peer held), and the
        # server sent the file about once in all. Sent twice may be only what the
        # killed transfer had pushed past the point the takeover resumed from (it died
        # with the owner; how far depends on how soon the kill lands: 5-8 MiB seen),
        # and, for each single piece, what the server had pushed into the socket
        # buffers when the bounded range ended by closing the data connection.
        assert ftp.rests and len(ftp.sent) == 1 + len(ftp.rests), (ftp.rests, ftp.sent)
        assert all(r > 0 and r % MiB == 0 for r in ftp.rests), ftp.rests
        resumed_at = size - max(ftp.sent[1:])   # the takeover's transfer ran to the end
        lost_with_the_owner = max(0, ftp.sent[0] - resumed_at)
        singles = len(ftp.sent) - 2
        assert ftp.body_bytes() - lost_with_the_owner <= size + singles * 4 * MiB, (ftp.sent, ftp.rests)
    finally:
        ftp.stop()


def sha256_file_of(data):
    import hashlib
    return hashlib.sha256(data).hexdigest()


@pytest.mark.time_limit(120)
def test_two_takeovers_on_an_origin_without_etag_or_ranges_keep_what_clients_hold(
        cluster, origin, tmp_path):
    """`python3 -m http.server` names no version and resumes nothing: each member
    taking over reads the file from byte 0. The piece digests it was given say the
    bytes are the same, so clients keep their pieces (no start over, no "source
    changed" after the second takeover) and every file is whole."""
    addresses = _start_all(cluster)
    size = 32 * MiB
    src = origin.add("plain.bin", content(size, seed=18))
    origin.fault("plain.bin", chunk_delay_s=0.04, no_etag=True, no_ranges=True)   # ~6 MB/s
    tid = task_id(src.url)
    clients = []
    for i in range(3):
        os.makedirs(str(tmp_path / ("p%d" % i)), exist_ok=True)
        clients.append(Client(addresses[i:] + addresses[:i], data_dir=str(tmp_path / ("p%d" % i)),
                              upload_listen="127.0.0.1:0", piece_timeout_s=5, failover_s=30))

    def kill_two_owners():
        alive = list(addresses)
        for _ in range(2):
            owner_addr = rendezvous_owner(tid, alive)
            watcher = SupernodeClient(owner_addr, timeout_s=2)
            try:
                wait_until(lambda w=watcher: any(t["task_id"] == tid and t["served_bytes"] >= 4 * MiB
                                                 for t in w.tasks()), timeout=40)
            finally:
                watcher.close()
            next(m for m in cluster if m.address == owner_addr).kill()
            alive.remove(owner_addr)
        return alive

    try:
        outcomes = run_all([lambda c=c, i=i: c.download(src.url, str(tmp_path / ("out%d" % i)))
                            for i, c in enumerate(clients)] + [kill_two_owners], timeout=110)
    finally:
        for c in clients:
            c.close()
    assert [e for _, e in outcomes if e is not None] == []
    for i in range(3):
        assert sha256_file(str(tmp_path / ("out%d" % i))) == src.sha256
    assert all(r.bytes_discarded == 0 for r, _ in outcomes[:-1]), [r for r, _ in outcomes[:-1]]
    gets = [s for s in origin.served("plain.bin") if s.method == "GET"]
    assert all(s.status == 200 for s in gets)   # no ranges: each answered whole
    # One read from byte 0 per owner (a plain GET, then resumes the origin ignores);
    # an adopter's orphan filler, if it ran first, asks for single pieces (closed ranges).
    cuts = [s for s in gets if not s.headers.get("Range") or s.headers["Range"].endswith("-")]
    assert len(cuts) == 3, [s.headers.get("Range") for s in gets]
