"""`--failure-ttl`: a source that failed is remembered for that long. Every peer
that asks in the meantime gets the failure at once, and the origin is not asked
again (it may be down, or refusing us: hammering it helps nobody)."""
import threading
import time

import pytest
from helpers import MiB, content, sha256_file, wait_until
from origin import Fault

from dfly.errors import SourceError
from dfly.httpd import Listener
from dfly.protocol.messages import RegisterRequest
from dfly.supernode.client import SupernodeClient
from dfly.supernode.config import SupernodeConfig
from dfly.supernode.server import SupernodeApp
from dfly.supernode.service import Supernode


class SkewedClock:
    """time.monotonic, plus however far the test moved it on."""

    def __init__(self):
        self.skew_s = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return time.monotonic() + self.skew_s

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.skew_s += seconds


@pytest.fixture
def clocked_supernode(tmp_path):
    """start(clock, **SupernodeConfig fields) -> address of a supernode on that clock."""
    started = []

    def start(clock, **settings):
        config = SupernodeConfig(listen="127.0.0.1:0", source_timeout_s=10.0, **settings)
        service = Supernode(config, str(tmp_path / "supernode"), clock=clock).start()
        listener = Listener("supernode-http", ("127.0.0.1", 0), SupernodeApp(service)).start()
        started.append((listener, service))
        return "127.0.0.1:%d" % listener.address[1]

    yield start
    for listener, service in reversed(started):
        listener.stop()
        service.stop()


@pytest.mark.parametrize("fault", [Fault(status=500), Fault(die_after=MiB // 2)],
                         ids=["500", "cut short"])
def test_a_failed_source_is_not_fetched_again_within_the_failure_ttl(
        origin, clocked_supernode, client_factory, downloads, fault):
    clock = SkewedClock()
    supernode = clocked_supernode(clock, failure_ttl_s=60.0)
    src = origin.add("down.bin", content(2 * MiB, seed=41))
    origin.fault("down.bin", fault)
    with pytest.raises(SourceError):
        client_factory([supernode]).download(src.url, str(downloads / "first.bin"))
    assert origin.requests("down.bin") == 1

    origin.heal("down.bin")          # the origin is fine again, but the failure is remembered
    witness = silent_peer(supernode, origin.add("witness.bin", content(MiB, seed=42)).url)
    # 45 s on: past --peer-ttl (30 s), so the janitor forgets the witness; 15 s short of
    # the TTL, a margin for the real seconds this takes on a loaded machine.
    clock.advance(45.0)
    wait_until(lambda: witness() == 0, timeout=10,
               message="the janitor ran past the skew (it forgot a peer silent for 45 s)")
    assert failed_tasks(supernode) == 1   # its pass 45 s after the failure kept it
    for name in ("second.bin", "third.bin"):
        with pytest.raises(SourceError):
            client_factory([supernode]).download(src.url, str(downloads / name))
    assert origin.requests("down.bin") == 1

    clock.advance(16.0)              # past the TTL: the next peer has the source fetched again
    result = client_factory([supernode]).download(src.url, str(downloads / "later.bin"))
    assert origin.requests("down.bin") == 2
    assert sha256_file(str(downloads / "later.bin")) == src.sha256
    assert result.via == "p2p" and result.bytes_from_source == 0


def silent_peer(supernode, url):
    """Register a peer on `url` that never speaks again; returns how many peers its
    task has. The janitor forgets it after --peer-ttl (30 s): seeing it gone shows
    that a janitor pass ran at the clock's new time."""
    tid, _ = _ask(supernode, lambda c: c.register(RegisterRequest(url=url, peer_id="witness",
                                                                  peer_port=9)))

    def peers():
        return sum(t["peers"] for t in _ask(supernode, SupernodeClient.tasks) if t["task_id"] == tid)
    assert peers() == 1
    return peers


def failed_tasks(supernode):
    return sum(t["state"] == "failed" for t in _ask(supernode, SupernodeClient.tasks))


def _ask(supernode, call):
    client = SupernodeClient(supernode, timeout_s=10)
    try:
        return call(client)
    finally:
        client.close()
