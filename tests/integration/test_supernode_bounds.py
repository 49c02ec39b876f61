"""What one client can make a supernode do is bounded: the pieces it claims and
never fetches, the tasks it registers, the fetch threads and folders those
leave behind."""
import time

import pytest
from helpers import MiB, content, wait_until

from dfly.protocol.messages import SUPERNODE, RegisterRequest, ScheduleRequest
from dfly.supernode.client import SupernodeClient


def _peer(supernode, url, peer_id):
    client = SupernodeClient(supernode.address, timeout_s=10)
    tid, _ = client.register(RegisterRequest(url=url, peer_id=peer_id, peer_port=9,
                                             peer_host="127.0.0.1"))
    return client, tid


@pytest.mark.time_limit(40)
def test_a_peer_that_claims_every_supernode_slot_and_never_fetches_stalls_others_for_seconds_only(
        origin, supernode):
    src = origin.add("big.bin", content(8 * MiB, seed=9))
    hoarder, tid = _peer(supernode, src.url, "hoarder")
    honest, _ = _peer(supernode, src.url, "honest")
    try:
        wait_until(lambda: hoarder.task(tid)["state"] == "done", message="the source fetched")
        claimed = hoarder.schedule(tid, ScheduleRequest("hoarder", want=64)).pieces
        assert [p.holder for p in claimed] == [SUPERNODE] * 4   # every upload slot
        assert honest.schedule(tid, ScheduleRequest("honest", want=4)).pieces == []
        began = time.monotonic()
        got = wait_until(lambda: honest.schedule(tid, ScheduleRequest("honest", want=4,
                                                                      wait_s=2.0)).pieces,
                         timeout=15, message="slots released")
        assert {p.holder for p in got} == {SUPERNODE}
        assert time.monotonic() - began < 15   # not the 60 s assignment timeout
    finally:
        hoarder.close()
        honest.close()
