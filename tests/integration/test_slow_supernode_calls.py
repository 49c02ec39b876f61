"""A schedule call whose reply does not come in time (dfly.peer.downloader.ask_again),
against a real supernode behind a TCP relay that withholds one schedule reply until
the client hangs up: made again while pieces still arrive (behind a link full of the
swarm's pieces a live supernode's reply can sit in a queue longer than any fixed
timeout; giving it up sent a whole 1.5 Mbit/s testbed to the origin), given up at
once when nothing arrives, as a hung or unreachable supernode is. The call made
again repeats the lost one's reports: the supernode counts its failures once."""
import time

import pytest
from helpers import MiB, content, wait_until
from relay import Relay

from dfly.peer.downloader import P2PDownload
from dfly.peer.storage import PieceFile
from dfly.protocol.messages import Failure, RegisterRequest, ScheduleRequest
from dfly.protocol.ratelimit import TokenBucket
from dfly.supernode.client import SupernodeClient, SupernodeSlow


class _Held:
    """One connection's state: the schedule request going (its bytes so far, and
    whether it was counted); its reply to be kept back; some kept."""

    def __init__(self):
        self.request = None
        self.counted = False
        self.kept_back = False
        self.dropped = False


class WithholdingRelay(Relay):
    """A TCP relay on 127.0.0.1:0 in front of `target` that keeps to itself the reply
    to the `nth` schedule request it passes holding each of `marks` (counted from 1
    over all connections) until the client hangs up; `withheld` counts the replies
    it kept."""

    def __init__(self, target: str, nth: int, marks=()):
        self.nth = nth
        self.marks = marks
        self.withheld = 0
        self._schedules = 0
        super().__init__(target)

    def connection(self) -> _Held:
        return _Held()

    def passing(self, data: bytes, held: _Held, upstream: bool):
        if upstream and b"/schedule " in data:   # a request line (http.client sends the
            held.request, held.counted = b"", False   # body in a send of its own)
        if upstream and held.request is not None and not held.counted:
            held.request += data
            if all(m in held.request for m in self.marks):
                held.counted = True
                with self._lock:
                    self._schedules += 1
                    held.kept_back = held.kept_back or self._schedules == self.nth
        if not upstream and held.kept_back:
            held.dropped = True
            return b"", True
        return data, True

    def ended(self, held: _Held, upstream: bool) -> None:
        if upstream and held.dropped:   # the client hung up on the withheld reply
            with self._lock:
                self.withheld += 1


# The coordinator's numbered calls that want nothing: made only while every slot, or
# every piece left, is being fetched, so piece bytes are arriving while one is out.
WHILE_FETCHING = (b'"want": 0,', b'"call": ')


def _download(origin, supernode, tmp_path, nth: int, rate: float, marks=()):
    """(the relay, the finished download or the error it ended in, the storage)."""
    data = content(6 * MiB, seed=18)
    src = origin.add("f.bin", data)
    relay = WithholdingRelay(supernode.address, nth, marks)
    client = SupernodeClient(relay.address, timeout_s=1)   # a withheld call ends 1 s after its long-poll
    storage = PieceFile(str(tmp_path / "f.part"))
    request = RegisterRequest(url=src.url, peer_id="patient-peer", peer_port=9, peer_host="127.0.0.1")
    download = P2PDownload(client, request, storage, 2, piece_timeout_s=20, deadline=time.monotonic() + 50,
                           bucket=TokenBucket(rate, time.monotonic()))
    try:
        outcome = download.run()
    except SupernodeSlow as e:
        outcome = e
    finally:
        client.close()
        relay.stop()
    return relay, outcome, storage, data


@pytest.mark.time_limit(60)
def test_a_call_that_times_out_while_pieces_arrive_is_made_again(origin, supernode, tmp_path):
    # At 0.5 MiB/s two pieces at once take 4 s, and with both slots busy the
    # coordinator calls every 2 s (KEEPALIVE_S), wanting nothing: that call is out
    # while pieces come. (The third call of all, used before, was at times the one
    # asking for more once both fetches had ended together: nothing arrived while it
    # was out, and it was rightly given up.)
    relay, outcome, storage, data = _download(origin, supernode, tmp_path, nth=1, rate=MiB / 2,
                                              marks=WHILE_FETCHING)
    try:
        assert relay.withheld == 1   # the client did hang up on it
        assert isinstance(outcome, str), outcome   # before: SupernodeDown, and the source for the rest
        with open(storage.path, "rb") as f:
            assert f.read() == data
    finally:
        storage.close()


@pytest.mark.time_limit(60)
def test_a_call_that_times_out_while_nothing_arrives_gives_the_supernode_up(origin, supernode, tmp_path):
    # The first schedule call: no piece has been assigned yet, so none can arrive.
    relay, outcome, storage, _ = _download(origin, supernode, tmp_path, nth=1, rate=MiB)
    storage.close()
    assert relay.withheld == 1
    assert isinstance(outcome, SupernodeSlow), outcome


def _failures_counted(supernode) -> float:
    """Piece failures the supernode counted (dfly_supernode_piece_failures_total, all reasons)."""
    text = supernode.service.metrics.registry.exposition()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("dfly_supernode_piece_failures_total{"))


@pytest.mark.time_limit(30)
def test_a_call_made_again_after_a_lost_reply_counts_its_failures_once(origin, supernode):
    """The call made again carries the reports of the one whose reply was lost; the
    supernode counted them when that one came (the requester's failures, the
    metrics, a bad copy's discards), and counts them once."""
    src = origin.add("blamed.bin", content(2 * MiB, seed=12))
    client = SupernodeClient(supernode.address, timeout_s=10)
    try:
        tid = None
        for peer_id in ("h", "a"):
            tid, _ = client.register(RegisterRequest(url=src.url, peer_id=peer_id, peer_port=9,
                                                     peer_host="127.0.0.1"))
        wait_until(lambda: client.task(tid)["state"] == "done", timeout=10, message="the file cut")
        failed = [Failure(0, "h", "transfer broke: connection reset")]
        client.schedule(tid, ScheduleRequest("a", failed=failed, want=0, call=1, heard=0))  # lost
        client.schedule(tid, ScheduleRequest("a", failed=failed, want=0, call=2, heard=0))  # again
        assert _failures_counted(supernode) == 1
        client.schedule(tid, ScheduleRequest("a", failed=failed, want=0, call=3, heard=2))  # a new one
        assert _failures_counted(supernode) == 2
        # The reporter's calls: numbered apart, a call made again keeping its number.
        client.schedule(tid, ScheduleRequest("a", failed=failed, want=0, report_call=1))    # lost
        client.schedule(tid, ScheduleRequest("a", failed=failed, want=0, report_call=1))    # again
        assert _failures_counted(supernode) == 3
        client.schedule(tid, ScheduleRequest("a", failed=failed, want=0, report_call=2))    # a new one
        assert _failures_counted(supernode) == 4
    finally:
        client.close()


def test_the_reporter_numbers_each_of_its_calls(tmp_path):
    """Each reporter call gets the next number here, once: _schedule makes an
    unnumbered request again as it is, so an attempt made again keeps it."""
    client = SupernodeClient("127.0.0.1:9", timeout_s=1)   # never called here
    storage = PieceFile(str(tmp_path / "f.part"))
    try:
        download = P2PDownload(client, RegisterRequest(url="http://127.0.0.1:9/f", peer_id="p1", peer_port=9),
                               storage, 2, piece_timeout_s=5, deadline=None)
        first = download._report_request([3], [], None)
        second = download._report_request([], [Failure(4, "h", "transfer broke")], "v1")
        assert (first.report_call, second.report_call) == (1, 2)
        assert (first.want, first.call, second.content_version) == (0, 0, "v1")
    finally:
        storage.close()
        client.close()
