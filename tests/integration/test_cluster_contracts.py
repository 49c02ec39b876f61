"""The supernode cluster's promises, one test each, with in-process members on
real sockets: piece digests reach the other members before any peer is offered
the piece (by the push, and by the pull on each ping, each tested with the
other held off), a member serving a live swarm keeps it when the hash owner
returns, and a split brain costs a second fetch but never bad data.

Members must know each other's addresses before they start, so these tests
reserve loopback ports (helpers.reserve_ports). A long --member-dead-after
holds the pings off (a member pings every quarter of it)."""
import hashlib
import json
import threading

import pytest
from helpers import (
    MiB,
    QuietHandler,
    Serving,
    content,
    reserve_ports,
    run_all,
    send_json,
    sha256_file,
    wait_until,
)
from origin import Fault

from dfly.protocol.pieces import block_digests, block_size_for
from dfly.protocol.task import task_id
from dfly.supernode.client import SupernodeClient
from dfly.supernode.cluster import rendezvous_owner

NO_PINGS_S = 600.0    # as --member-dead-after: the first ping would come after 150 s
QUICK_DEATH_S = 1.0   # pings every 0.25 s, a silent member dead after 1 s


def name_owned_by(origin, owner, members):
    """A file name on `origin` whose task `owner` owns among `members` by the hash."""
    return next(n for n in ("f%d.bin" % i for i in range(100))
                if rendezvous_owner(task_id(origin.url(n)), members) == owner)


def piece_digests(data, piece_size=MiB):
    return [hashlib.sha256(data[i:i + piece_size]).hexdigest() for i in range(0, len(data), piece_size)]


def piece_blocks(data, piece_size=MiB):
    """What a takeover needs for cut-through: each piece's block digests."""
    return [block_digests(data[i:i + piece_size], block_size_for(piece_size))
            for i in range(0, len(data), piece_size)]


@pytest.fixture
def member(supernode_factory, tmp_path):
    """member(address, members, secret=..., dead_after_s=..., name=...) -> a running member."""
    def start(address, members, secret="s3cret", dead_after_s=QUICK_DEATH_S, name=None):
        return supernode_factory(data_dir=tmp_path / (name or address.replace(":", "_")),
                                 listen=address, cluster=[",".join(members)], cluster_secret=secret,
                                 member_dead_after_s=dead_after_s, adopt_grace_s=1.0)
    return start


def cluster_view(address):
    """{member: alive} and {member: active task count} as the member at `address` sees them."""
    client = SupernodeClient(address, timeout_s=2)
    try:
        members = client.cluster()["members"]
    finally:
        client.close()
    return {m["member"]: m["alive"] for m in members}, {m["member"]: m["active_tasks"] for m in members}


def task_ids_at(address):
    client = SupernodeClient(address, timeout_s=2)
    try:
        return {t["task_id"]: t for t in client.tasks()}
    finally:
        client.close()


class RecordingMember(Serving):
    """A cluster member that only records the task metadata pushed to it and, for
    each push, how many pieces the pushing supernode had made available by then."""

    def __init__(self):
        self.pushes = []
        self.watched = None   # the address of the member pushing to us
        recorder = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_PUT(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                tid = self.path.rsplit("/", 1)[1]
                offered = task_ids_at(recorder.watched)[tid]["pieces_written"]
                recorder.pushes.append((len(body["digests"]), offered, body["digests"]))
                send_json(self, {"ok": True})

            def do_POST(self):   # a ping
                send_json(self, {"member": recorder.address, "active": [], "tasks": {}})

        super().__init__(Handler, "recording-member")


@pytest.fixture
def recording_member():
    fake = RecordingMember()
    yield fake
    fake.stop()


def test_each_piece_digest_is_pushed_to_the_members_before_any_peer_is_offered_the_piece(
        origin, member, recording_member, client_factory, downloads):
    address, = reserve_ports(1)
    members = [address, recording_member.address]
    member(address, members, dead_after_s=NO_PINGS_S)
    recording_member.watched = address
    data = content(4 * MiB + 5, seed=61)
    src = origin.add(name_owned_by(origin, address, members), data)

    client_factory([address]).download(src.url, str(downloads / "f.bin"))

    expected = piece_digests(data)
    assert len(expected) == 5
    # Push k carries the digests of pieces 0..k and came while pieces 0..k-1 only were offered.
    assert [(n, offered) for n, offered, _ in recording_member.pushes] == [(k + 1, k) for k in range(5)]
    assert [digests for _, _, digests in recording_member.pushes] == [expected[:k + 1] for k in range(5)]


def test_a_member_that_never_pings_gets_every_digest_by_the_push(
        origin, member, client_factory, downloads):
    addresses = reserve_ports(2)
    running = {a: member(a, addresses, dead_after_s=NO_PINGS_S) for a in addresses}
    data = content(3 * MiB + 7, seed=62)
    src = origin.add("f.bin", data)
    tid = task_id(src.url)
    owner = rendezvous_owner(tid, addresses)
    other = next(a for a in addresses if a != owner)

    client_factory([owner]).download(src.url, str(downloads / "f.bin"))

    assert tid in task_ids_at(owner) and tid not in task_ids_at(other)
    assert running[other].service.replicas.get(tid)["digests"] == piece_digests(data)
    assert running[other].service.replicas.get(tid)["blocks"] == piece_blocks(data)


def test_a_member_that_missed_the_pushes_pulls_the_digests_when_it_pings(
        origin, member, client_factory, downloads):
    first, late = reserve_ports(2)
    running = member(first, [first, late])
    wait_until(lambda: cluster_view(first)[0][late] is False, timeout=10,
               message="%s counts the member never started as dead" % first)
    data = content(3 * MiB + 7, seed=63)
    src = origin.add("f.bin", data)
    tid = task_id(src.url)
    client_factory([first]).download(src.url, str(downloads / "f.bin"))   # no member to push to
    assert running.service.task_status(tid)["state"] == "done"

    joined = member(late, [first, late])
    wait_until(lambda: joined.service.replicas.count(tid) == 4, timeout=10,
               message="the late member copied the task's digests")
    assert joined.service.replicas.get(tid)["digests"] == piece_digests(data)
    assert joined.service.replicas.get(tid)["blocks"] == piece_blocks(data)


@pytest.mark.time_limit(60)
def test_a_member_serving_a_live_swarm_keeps_it_when_the_hash_owner_returns(
        origin, member, client_factory, downloads):
    hash_owner, stand_in = reserve_ports(2)
    members = [hash_owner, stand_in]
    name = name_owned_by(origin, hash_owner, members)
    src = origin.add(name, content(3 * MiB, seed=64))
    tid = task_id(src.url)
    hold = origin.fault(name, Fault(hold=threading.Event())).hold   # the swarm stays live
    member(stand_in, members)
    wait_until(lambda: cluster_view(stand_in)[0][hash_owner] is False, timeout=10)
    early, late = client_factory([stand_in]), client_factory([hash_owner, stand_in])

    def late_download():
        member(hash_owner, members)    # the hash owner comes back while the swarm runs
        wait_until(lambda: cluster_view(hash_owner)[0][stand_in] and
                   cluster_view(hash_owner)[1][stand_in] == 1, timeout=10,
                   message="%s heard that %s serves the task" % (hash_owner, stand_in))
        result = late.download(src.url, str(downloads / "late.bin"))
        return result

    def release_when_both_joined():
        wait_until(lambda: task_ids_at(stand_in).get(tid, {}).get("peers", 0) >= 2, timeout=20,
                   message="both peers joined the stand-in's swarm")
        hold.set()

    outcomes = run_all([lambda: early.download(src.url, str(downloads / "early.bin")),
                        late_download, release_when_both_joined], timeout=45)
    assert [e for _, e in outcomes if e is not None] == []
    assert outcomes[1][0].via == "p2p"
    assert origin.requests(name) == 1
    assert tid not in task_ids_at(hash_owner)
    for target in ("early.bin", "late.bin"):
        assert sha256_file(str(downloads / target)) == src.sha256


@pytest.mark.parametrize("difference", ["secret", "member list"])
def test_a_member_with_another_secret_or_member_list_is_refused(
        origin, member, client_factory, downloads, difference):
    """A supernode of another cluster pings ours all along; ours never counts it alive
    (it would own tasks, and take pushed digests), while the two real members
    count each other alive."""
    a, stranger, c = reserve_ports(3)
    members = [a, stranger, c]
    member(a, members)
    member(c, members)
    if difference == "secret":
        member(stranger, members, secret="another")
    else:
        member(stranger, [a, stranger])

    def refused():
        views = {address: cluster_view(address)[0] for address in members}
        return (views[a][c] and views[c][a] and not views[a][stranger] and not views[c][stranger]
                and not views[stranger][a])
    wait_until(refused, timeout=10, message="the stranger is dead to the cluster, the members alive")
    # A task the hash would give the stranger stays in the cluster.
    src = origin.add(name_owned_by(origin, stranger, members), content(MiB, seed=67))
    result = client_factory([a]).download(src.url, str(downloads / "f.bin"))
    assert result.via == "p2p"
    assert task_id(src.url) in set(task_ids_at(a)) | set(task_ids_at(c))
    assert task_id(src.url) not in task_ids_at(stranger)


@pytest.mark.time_limit(60)
def test_a_split_brain_costs_a_second_fetch_but_a_peer_of_one_side_cannot_feed_the_other(
        origin, member, client_factory, downloads):
    """Two members that cannot hear each other (another secret, here) both own the
    task. The origin's bytes change between their fetches, so each has other piece
    digests. A peer holding the first side's file is then offered by the second to
    its own client (it announced the file there, naming no content version, as a
    peer older than that field does): every piece it sends is rejected."""
    left, right = reserve_ports(2)
    member(left, [left, right], secret="one")
    member(right, [left, right], secret="two")
    for me, them in ((left, right), (right, left)):
        wait_until(lambda me=me, them=them: cluster_view(me)[0][them] is False, timeout=10,
                   message="%s thinks it is alone" % me)
    old = origin.add("f.bin", content(4 * MiB, seed=65))
    tid = task_id(old.url)
    client_factory([left]).download(old.url, str(downloads / "old.bin"))

    new = origin.add("f.bin", content(4 * MiB, seed=66))        # same URL, same size, new bytes
    client_factory([right]).download(new.url, str(downloads / "first-new.bin"))   # then leaves
    assert task_ids_at(right)[tid]["state"] == "done"
    # The left side's file, announced to the right side (a daemon restarted with its
    # cache, or failing over), as a peer that names no content version does.
    peer_of_left = client_factory([right], seed_for_s=60)
    assert peer_of_left.announce(old.url, str(downloads / "old.bin"), MiB) == tid

    result = client_factory([right]).download(new.url, str(downloads / "new.bin"))

    assert sha256_file(str(downloads / "new.bin")) == new.sha256
    assert peer_of_left.uploaded_bytes > 0                        # they did meet
    assert result.bytes_from_peers == 0 and result.bytes_from_supernode == new.size
    assert origin.requests("f.bin") == 2
