"""A peer talking to something that answers like no supernode would (a hostile
host, a proxy's error page, another version): every call ends in a typed error,
SupernodeDown for a reply that is not one, so the downloader fails over
instead of dying with a KeyError."""
import json

import pytest
from helpers import QuietHandler, Serving, send_body

from dfly.errors import DflyError
from dfly.protocol.messages import RegisterRequest, ScheduleRequest
from dfly.supernode.client import SupernodeClient, SupernodeDown

TID = "a" * 64


class LyingSupernode(Serving):
    """Answers every request with (status, body) set by the test."""

    def __init__(self):
        self.reply = (200, b"{}")
        lying = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, body = lying.reply
                send_body(self, body, status)

        super().__init__(Handler, "lying-supernode")


@pytest.fixture
def liar():
    server = LyingSupernode()
    yield server
    server.stop()


def _state(**changes) -> dict:
    return dict({"task_id": TID, "state": "running", "length": 10, "piece_size": 10,
                 "piece_count": 1, "pieces": []}, **changes)


BAD_REPLIES = [
    ("a JSON list", 200, b"[1, 2]"),
    ("no task id", 200, json.dumps(_state(task_id=None)).encode()),
    ("no task id field", 200, json.dumps({k: v for k, v in _state().items() if k != "task_id"}).encode()),
    ("a task id that is no task id", 200, json.dumps(_state(task_id="../" + TID)).encode()),
    ("no state", 200, json.dumps(_state(state=None)).encode()),
    ("a piece number that is text", 200,
     json.dumps(_state(pieces=[{"num": "x", "start": 0, "size": 1, "sha256": "a", "holder": "h"}])).encode()),
    ("pieces that are not a list", 200, json.dumps(_state(pieces=7)).encode()),
    ("a length that is text", 200, json.dumps(_state(length="10")).encode()),
    ("a redirect to a bad address", 200, json.dumps({"redirect": "h:99999"}).encode()),
    ("an error kind that is a list", 400, json.dumps({"kind": [1], "error": "x"}).encode()),
    ("deeply nested JSON", 200, b"[" * 100000),
]


@pytest.mark.parametrize("name,status,body", BAD_REPLIES, ids=[case[0] for case in BAD_REPLIES])
def test_a_reply_no_supernode_would_send_is_a_typed_error(liar, name, status, body):
    liar.reply = (status, body)
    client = SupernodeClient(liar.address, timeout_s=5)
    try:
        with pytest.raises(DflyError) as raised:
            client.register(RegisterRequest(url="http://127.0.0.1:1/f", peer_id="p", peer_port=1))
        if status == 200:
            assert isinstance(raised.value, SupernodeDown), raised.value
        if not name.startswith(("no task id", "a task id")):   # the rest is a state a schedule call could get
            with pytest.raises(DflyError):
                client.schedule(TID, ScheduleRequest("p"))
    finally:
        client.close()
