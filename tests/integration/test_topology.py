"""Two zones of three peers each, one origin: with --location the file crosses
between zones about once per zone; a supernode told to ignore the locations (same
peers' labels, so the same zone accounting) lets it cross several times."""
import pytest
from helpers import MiB, content, run_all, sha256_file, wait_until

from dfly.supernode.client import SupernodeClient

ZONES = ("eu/zone-a/rack-1", "eu/zone-b/rack-1")
PER_ZONE = 3


def _swarm(supernode, client_factory, downloads, src, tag):
    """Six peers, three per zone, fetch `src` at once; returns the task's summary once
    every piece they took from each other is reported (a report may trail a download)."""
    clients = [client_factory([supernode.address], location=zone)
               for zone in ZONES for _ in range(PER_ZONE)]
    targets = [str(downloads / ("%s%d.bin" % (tag, i))) for i in range(len(clients))]
    outcomes = run_all([lambda c=c, t=t: c.download(src.url, t, digest=src.digest)
                        for c, t in zip(clients, targets)], timeout=50)
    errors = [e for _, e in outcomes if e is not None]
    assert not errors, errors
    for target in targets:
        assert sha256_file(target) == src.sha256
    from_peers = sum(result.bytes_from_peers for result, _ in outcomes)
    sn = SupernodeClient(supernode.address, timeout_s=5)
    try:
        return wait_until(lambda: (lambda t: t if t["bytes_within_zone"] + t["bytes_across_zones"]
                                   == from_peers else None)(sn.task(outcomes[0][0].task_id)),
                          timeout=20, message="every byte peers moved counted by zone")
    finally:
        sn.close()


@pytest.mark.time_limit(90)
def test_labelled_peers_cross_zones_about_once_per_zone_and_unlabelled_several_times(
        origin, supernode_factory, client_factory, downloads, tmp_path):
    src = origin.add("zoned.bin", content(24 * MiB, seed=19))   # 24 pieces of 1 MiB
    near = _swarm(supernode_factory(tmp_path / "near"), client_factory, downloads, src, "near")
    blind = _swarm(supernode_factory(tmp_path / "blind", ignore_locations=True),
                   client_factory, downloads, src, "blind")
    across_near = near["bytes_across_zones"] / src.size
    across_blind = blind["bytes_across_zones"] / src.size
    print("copies across zones: with locations %.2f, ignoring them %.2f" % (across_near, across_blind))
    assert across_near <= 1.5, across_near
    assert across_blind >= 2.0, across_blind
