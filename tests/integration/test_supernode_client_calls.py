"""SupernodeClient's transport against a server on a real socket: a keep-alive
connection the server closed meanwhile (its idle timeout: 30 s for a supernode,
which a download's reporter, used only while its coordinator is in a call,
often outlives) is retried once on a fresh one. Before, http.client's dropping
the broken socket made the retry look pointless, and one idle connection sent
the whole download to the source."""
import json

import pytest
from helpers import QuietHandler, Serving, send_body

from dfly.protocol.messages import ScheduleRequest
from dfly.supernode.client import SupernodeClient, SupernodeDown

TID = "a" * 64
STATE = {"task_id": TID, "state": "running", "length": 10, "piece_size": 10, "piece_count": 1, "pieces": []}


class OneReplyPerConnection(Serving):
    """Answers the first request on each connection with a running task's state,
    keeping it alive (HTTP/1.1, no Connection: close); closes it on the second
    without a reply, as a server whose idle timeout struck just then does (the
    client sent its request and reads end-of-file)."""

    def __init__(self):
        self.answered = 0
        server = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if getattr(self, "replied", False):
                    self.close_connection = True
                    return
                self.replied = True
                server.answered += 1
                send_body(self, json.dumps(STATE).encode())

        super().__init__(Handler, "closing-supernode", quiet=True)


@pytest.mark.time_limit(20)
def test_a_keep_alive_connection_the_server_closed_is_retried_on_a_fresh_one():
    server = OneReplyPerConnection()
    client = SupernodeClient(server.address, timeout_s=5)
    try:
        for _ in range(3):
            assert client.schedule(TID, ScheduleRequest("p")).state == "running"
        assert server.answered == 3
    finally:
        client.close()
        server.stop()


@pytest.mark.time_limit(20)
def test_a_fresh_connection_that_fails_is_not_retried():
    server = OneReplyPerConnection()
    address = server.address
    server.stop()   # nothing listens there now: refused at once
    client = SupernodeClient(address, timeout_s=5)
    try:
        with pytest.raises(SupernodeDown, match="unreachable"):
            client.schedule(TID, ScheduleRequest("p"))
    finally:
        client.close()
