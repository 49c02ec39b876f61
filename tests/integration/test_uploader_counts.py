"""An uploader's counts (bytes uploaded, pieces relayed) stay exact while the
threads of several connections serve pieces at once. `count += size` reads,
adds and stores: a thread switch between the read and the store (CPython 3.8
and 3.9 switch there; a free-threaded build runs both at once) loses the other
thread's bytes. Here the size is an int whose addition waits until the other
request adds too, so that switch happens every time, not by chance."""
import threading

import pytest
from helpers import piece_access

from dfly.httpd import Request
from dfly.peer.uploader import UploaderApp
from dfly.supernode.client import PeerSecrets

TASK = "a" * 64
SECRET = "the holder's secret"


class MeetingSize(int):
    """A piece size that, added to a count, waits (a bounded time) for a second addition."""

    def __new__(cls, value: int, meeting: threading.Barrier):
        size = super().__new__(cls, value)
        size.meeting = meeting
        return size

    def __radd__(self, count: int) -> int:   # int + MeetingSize asks this first
        try:
            self.meeting.wait()
        except threading.BrokenBarrierError:   # the other is not adding now: as it should be
            pass
        return count + int(self)


class Pieces:
    """A file whose one piece is held (`piece_slice`) or still arriving (`arriving_slice`)."""

    def __init__(self, size: int, held: bool):
        self.path, self.size, self.held = "/nonexistent", size, held

    def piece_slice(self, num: int):
        return (0, self.size) if self.held else None

    def arriving_slice(self, num: int):
        return (0, self.size)


@pytest.mark.parametrize("held", [True, False], ids=["held", "arriving"])
def test_pieces_served_at_once_by_two_threads_are_both_counted(held):
    size = MeetingSize(1000, threading.Barrier(2, timeout=1.0))
    app = UploaderApp(secrets=PeerSecrets({"127.0.0.1:8002": SECRET}))
    app.publish(TASK, Pieces(size, held))
    _, headers = piece_access(SECRET, TASK, "reader")   # as scheduled: a token for "reader"
    request = Request("GET", "/v1/tasks/%s/pieces/0" % TASK, {"peer": ["reader"]}, headers, b"",
                      ("127.0.0.1", 1))
    threads = [threading.Thread(target=app.piece, args=(request, TASK, "0"), name="upload-%d" % i)
               for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert app.uploaded_bytes == 2 * 1000
    assert app.relayed_pieces == (0 if held else 2)
