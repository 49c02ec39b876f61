"""How a dfly listener (httpd.Handler) writes a reply: a small body goes out in
the same send as its headers. Two sends were two segments (the listener sets
TCP_NODELAY), and a client woken by the first often slept again until the
second came: a thread switch more on each side of every schedule call.

The handler here serves one end of a SOCK_SEQPACKET socket pair, which keeps
each send whole as one record: the records the test reads are the handler's sends."""
import socket
import threading

import pytest

from dfly.httpd import SMALL_REPLY_BYTES, Handler, Response, Server


class _Sized:
    def route(self, request):
        return Response(200, b"x" * int(request.path.strip("/")), {"Content-Type": "text/plain"})


class _PairHandler(Handler):
    disable_nagle_algorithm = False   # (not a TCP socket)


def _records(size: int):
    """The records a GET for a `size`-byte body was answered with."""
    server = Server(("127.0.0.1", 0), _Sized())   # the handler's settings; never started
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.settimeout(10)
    try:
        ours.sendall(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
        ours.shutdown(socket.SHUT_WR)   # one request, then the end
        serving = threading.Thread(target=_PairHandler, args=(theirs, ("127.0.0.1", 1), server), daemon=True)
        serving.start()
        serving.join(10)   # it answered, read the end, and returned
        assert not serving.is_alive()
        theirs.close()
        records = []
        while True:
            record = ours.recv(1 << 20)
            if not record:
                return records
            records.append(record)
    finally:
        ours.close()
        theirs.close()
        server.server_close()


@pytest.mark.time_limit(20)
def test_a_small_reply_goes_out_in_one_send_with_its_headers():
    records = _records(100)
    assert len(records) == 1
    assert records[0].startswith(b"HTTP/1.1 200 ") and records[0].endswith(b"\r\n\r\n" + b"x" * 100)


@pytest.mark.time_limit(20)
def test_a_large_reply_is_not_copied_into_its_headers():
    records = _records(SMALL_REPLY_BYTES + 1)
    assert records[0].endswith(b"\r\n\r\n")
    assert b"".join(records[1:]) == b"x" * (SMALL_REPLY_BYTES + 1)
