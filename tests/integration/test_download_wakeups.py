"""Whom a settled piece wakes in a download (dfly.peer.downloader): the
coordinator always (a worker is free: it asks for the next piece, and its call
carries the report), the reporter only while the coordinator is held in a call
(then only the reporter can tell the supernode at once). The reporter used to be
woken at every piece's end and go back to sleep: a thread switch and a turn at
the GIL each, for nothing. Read off the condition while the test holds the
download's lock (helpers.waiting_on), so nothing depends on timing."""
import pytest
from helpers import wait_until, waiting_on

from dfly.peer.downloader import P2PDownload
from dfly.peer.storage import PieceFile
from dfly.protocol.messages import SUPERNODE, PieceOrder, RegisterRequest
from dfly.supernode.client import SupernodeClient

PIECE = 1 << 20


def _order(num: int) -> PieceOrder:
    return PieceOrder(num=num, start=num * PIECE, size=PIECE, sha256="", holder=SUPERNODE)


@pytest.mark.time_limit(20)
def test_the_reporter_sleeps_through_pieces_settled_between_calls(tmp_path):
    client = SupernodeClient("127.0.0.1:9", timeout_s=1)   # never called: nothing is left to report
    storage = PieceFile(str(tmp_path / "f.part"))
    storage.set_geometry(2 * PIECE, PIECE)
    request = RegisterRequest(url="http://127.0.0.1:9/f", peer_id="p", peer_port=9, peer_host="127.0.0.1")
    download = P2PDownload(client, request, storage, 2, piece_timeout_s=5, deadline=None)
    download._start_reporter()
    reports = download._reports   # the condition the reporter waits on
    try:
        wait_until(lambda: waiting_on(reports) == 1)
        with download._lock:
            download._settle(_order(0))   # the coordinator's next call carries this report
            assert waiting_on(reports) == 1
            download._in_call = True
            download._settle(_order(1))   # it is held in a call: the reporter's turn
            assert waiting_on(reports) == 0
            download._in_call = False
            download._done.clear()
    finally:
        download._close_reporter()
        storage.close()
        client.close()
    assert not download._reporter.is_alive()
