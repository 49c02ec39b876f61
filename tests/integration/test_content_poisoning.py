"""A content-addressed task (the digest is the identifier) named first by a dead
URL: the other registrants' URLs are kept, and the task is fetched from one of
them, at once, instead of failing every later download of that digest."""
import threading

import pytest
from helpers import content, run_all, sha256_file, wait_until

from dfly.protocol.messages import RegisterRequest
from dfly.protocol.task import task_id


def _register_dead(sn_client, origin, digest: str) -> str:
    """What an attacker does: name the digest by a URL that never serves it."""
    tid, _ = sn_client.register(RegisterRequest(origin.url("dead.bin"), "attacker", 1, "127.0.0.1",
                                                digest=digest, identifier=digest))
    return tid


@pytest.mark.time_limit(30)
def test_a_digest_first_registered_with_a_dead_url_still_downloads(origin, supernode, sn_client,
                                                                   client_factory, downloads):
    src = origin.add("blob.bin", content(3 << 20, seed=81))
    tid = _register_dead(sn_client, origin, src.digest)
    assert tid == task_id(src.url, digest=src.digest, identifier=src.digest)
    wait_until(lambda: sn_client.task(tid)["state"] == "failed", timeout=10)

    result = client_factory([supernode.address]).download(
        src.url, str(downloads / "blob.bin"), digest=src.digest, identifier=src.digest)
    assert result.via == "p2p" and result.task_id == tid
    assert sha256_file(str(downloads / "blob.bin")) == src.sha256
    assert origin.requests("blob.bin") == 1


@pytest.mark.time_limit(30)
def test_a_dead_url_failing_while_others_wait_hands_the_task_to_their_url(origin, supernode, sn_client,
                                                                          client_factory, downloads):
    src = origin.add("blob.bin", content(3 << 20, seed=82))
    hold = threading.Event()
    origin.fault("dead.bin", status=404, hold=hold)
    tid = _register_dead(sn_client, origin, src.digest)
    client = client_factory([supernode.address])

    def download():
        return client.download(src.url, str(downloads / "blob.bin"), digest=src.digest,
                               identifier=src.digest)

    def joined():
        wait_until(lambda: sn_client.task(tid)["peers"] == 2, timeout=10, message="the get joined")
        hold.set()   # now the dead URL answers 404

    outcomes = run_all([download, joined], timeout=25)
    assert [e for _, e in outcomes] == [None, None]
    assert sha256_file(str(downloads / "blob.bin")) == src.sha256
    assert [s.status for s in origin.served("dead.bin")] == [404]
    assert origin.requests("blob.bin") == 1
