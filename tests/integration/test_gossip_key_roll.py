"""Rolling the gossip key ring (docs/GOSSIP.md, Security) across three gossip
supernodes, one restart at a time, without the schedulers splitting: the new key
goes in second everywhere, then first, then the old one goes. After every
restart a download through a member that does not own the task is fetched from
the source once and its piece digests reach the other homes (signed calls
between schedulers taken under either key)."""
import pytest
from helpers import MiB, content, sha256_file, wait_until

from dfly.client import Client
from dfly.gossip.cluster import homes
from dfly.protocol.task import task_id
from dfly.supernode import app
from dfly.supernode.config import SupernodeConfig

OLD = "the old cluster key, more than sixteen characters"
NEW = "the new cluster key, more than sixteen characters"
ROLL = [[OLD, NEW], [NEW, OLD], [NEW]]


def _alive(sn):
    return sorted(m["member"] for m in sn.service.cluster_status()["members"] if m["alive"])


class Cluster:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.members = [None, None, None]

    def start(self, i, keys):
        key_file = self.tmp_path / ("keys%d" % i)
        key_file.write_text("\n".join(keys) + "\n")
        host = "127.0.0.%d" % (90 + i)
        seed = next((m for m in self.members if m is not None), None)
        join = ["%s:%d" % seed.gossip.address] if seed is not None else []
        self.members[i] = app.start(SupernodeConfig(
            listen=host + ":0", source_timeout_s=10.0, gossip=True, gossip_key_file=str(key_file),
            gossip_listen=host + ":0", gossip_profile="fast", join=join), str(self.tmp_path / ("sn%d" % i)))

    def restart(self, i, keys):
        old, self.members[i] = self.members[i], None
        old.stop()
        self.start(i, keys)

    def converged(self):
        everyone = sorted(sn.service.me for sn in self.members)
        return all(_alive(sn) == everyone for sn in self.members)

    def stop(self):
        for sn in self.members:
            if sn is not None:
                sn.stop()


@pytest.mark.time_limit(150)
def test_a_full_key_roll_one_member_at_a_time_never_splits_the_schedulers(origin, tmp_path):
    cluster = Cluster(tmp_path)
    try:
        for i in range(3):
            cluster.start(i, [OLD])
        wait_until(cluster.converged, timeout=30, message="three members alive everywhere")
        step = 0
        for ring in ROLL:
            for i in range(3):
                cluster.restart(i, ring)
                wait_until(cluster.converged, timeout=30, message="converged after restart %d" % step)
                _download_through_a_non_owner(cluster.members, origin, tmp_path, step)
                step += 1
    finally:
        cluster.stop()


def _download_through_a_non_owner(members, origin, tmp_path, step):
    src = origin.add("roll%d.bin" % step, content(1 * MiB, seed=80 + step))
    tid = task_id(src.url)
    home_set = homes(tid, sorted(sn.service.me for sn in members))
    by_name = {sn.service.me: sn for sn in members}
    entry = next(sn for sn in members if sn.service.me != home_set[0])
    target = str(tmp_path / ("roll%d.out" % step))
    with Client([entry.address]) as client:
        client.download(src.url, target)
    assert sha256_file(target) == src.sha256
    assert origin.requests(src.name) == 1
    pieces = len(by_name[home_set[0]].service.loaded_task(tid).digests)
    for home in home_set[1:]:   # the owner's signed replica pushes were taken
        wait_until(lambda h=home: by_name[h].service.replicas.count(tid) == pieces, timeout=20,
                   message="the digests of step %d reached home %s" % (step, home))
