"""`dfly supernode --gossip`: supernodes find each other by gossip instead of a
fixed --cluster list, agree on who owns a task, and a download through any of
them is fetched from the source once."""
import hashlib

import pytest
from helpers import MiB, content, sha256_file, wait_until

from dfly.client import Client
from dfly.gossip.cluster import homes
from dfly.protocol.task import task_id


@pytest.fixture
def gossip_supernodes(supernode_factory, tmp_path):
    key = tmp_path / "gossip.key"
    key.write_text("a cluster key of more than sixteen characters\n")

    def start(count):
        started = []
        for i in range(count):
            host = "127.0.0.%d" % (40 + i)
            join = [started[0].gossip.address[0] + ":%d" % started[0].gossip.address[1]] if started else []
            started.append(supernode_factory(data_dir=tmp_path / ("sn%d" % i), listen=host + ":0",
                                             gossip=True, gossip_key_file=str(key),
                                             gossip_listen=host + ":0", gossip_profile="fast", join=join))
        return started
    return start


def _alive(sn):
    return sorted(m["member"] for m in sn.service.cluster_status()["members"] if m["alive"])


def test_supernodes_joining_by_gossip_agree_on_the_members_and_the_owner(gossip_supernodes, origin, tmp_path):
    sns = gossip_supernodes(3)
    everyone = sorted(sn.service.me for sn in sns)
    wait_until(lambda: all(_alive(sn) == everyone for sn in sns), timeout=20, message="all members alive")
    data = content(4 * MiB, seed=7)
    origin.add("f.bin", data)
    # Through the member that does not own the task: redirected to the owner, one source fetch.
    owner = homes(task_id(origin.url("f.bin")), everyone)[0]
    entry = next(sn for sn in sns if sn.service.me != owner)
    with Client([entry.address]) as client:
        client.download(origin.url("f.bin"), str(tmp_path / "out.bin"))
    assert sha256_file(str(tmp_path / "out.bin")) == hashlib.sha256(data).hexdigest()
    assert origin.requests("f.bin") == 1
    assert [sn.service.me for sn in sns if sn.service.task_list()] == [owner]


def test_a_supernode_with_both_gossip_and_a_cluster_list_is_refused(supernode_factory, tmp_path):
    key = tmp_path / "gossip.key"
    key.write_text("a cluster key of more than sixteen characters\n")
    with pytest.raises(ValueError, match="leave out --cluster"):
        supernode_factory(gossip=True, gossip_key_file=str(key), gossip_listen="127.0.0.1:0",
                          cluster=["127.0.0.1:1"], cluster_secret="x" * 32)


def test_metrics_show_the_gossip_view_and_its_events(gossip_supernodes):
    import urllib.request
    sns = gossip_supernodes(2)
    everyone = sorted(sn.service.me for sn in sns)
    wait_until(lambda: all(_alive(sn) == everyone for sn in sns), timeout=20, message="both alive")

    def scrape_once_probed():
        with urllib.request.urlopen("http://%s/metrics" % sns[0].address, timeout=5) as r:
            text = r.read().decode()
        return text if 'dfly_gossip_events_total{event="probes"}' in text else None
    text = wait_until(scrape_once_probed, timeout=20, message="a probe counted")
    assert 'dfly_gossip_members{state="alive"} 2' in text
    assert 'dfly_gossip_members{state="dead"} 0' in text
    assert 'dfly_gossip_events_total{event="probes"}' in text
    assert 'dfly_supernode_peer_zone_bytes_total{zone="across"} 0' in text


def test_a_gossip_scheduler_pings_a_few_members_a_round_not_all():
    from dfly.gossip.cluster import SYNC_FANOUT, GossipMembership

    class View:   # the gossip view of 50 schedulers
        def metas(self):
            return [("alive", {"sn": "10.0.0.%d:8002" % i}) for i in range(50)]
    membership = GossipMembership("10.0.0.0:8002", View(), 0.0)
    assert len(membership.others()) == 49
    rounds = [membership.sync_targets() for _ in range(20)]
    assert all(len(r) == SYNC_FANOUT and "10.0.0.0:8002" not in r for r in rounds)
    assert len({m for r in rounds for m in r}) > SYNC_FANOUT   # a different few each round


# An address of its own: another process's connections from 127.0.0.1 may take any
# ephemeral port there between the probe and the start, but not one on this address.
GOSSIP_HOST = "127.0.0.93"


def _free_port() -> int:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((GOSSIP_HOST, 0))
        return probe.getsockname()[1]


def _gossip_port_is_free(port: int) -> bool:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        try:
            udp.bind((GOSSIP_HOST, port))
            tcp.bind((GOSSIP_HOST, port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("program", ["supernode", "daemon"])
def test_a_gossip_member_that_cannot_take_its_listen_port_lets_its_gossip_port_go(
        program, supernode_factory, daemons, tmp_path):
    import socket
    key = tmp_path / "gossip.key"
    key.write_text("a cluster key of more than sixteen characters\n")
    gossip_port = _free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        listen = "127.0.0.1:%d" % taken.getsockname()[1]
        start = supernode_factory if program == "supernode" else daemons.start
        with pytest.raises(Exception) as failed:
            start(listen=listen, gossip=True, gossip_key_file=str(key),
                  gossip_listen="%s:%d" % (GOSSIP_HOST, gossip_port))
        # While the failed program's frames are still referenced (as a caller's would be).
        assert failed.value is not None and _gossip_port_is_free(gossip_port)
