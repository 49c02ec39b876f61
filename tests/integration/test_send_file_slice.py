"""send_file_slice (dfly.httpd) on a plain socket with a timeout, as every
handler's is: it sends the slice whole however often the socket is full, ends
short when the file does, and gives up with socket.timeout when the reader
takes nothing for the socket's timeout. (It calls os.sendfile itself rather
than socket.sendfile, which makes a selector and polls before every call.)"""
import socket
import threading

import pytest
from helpers import MiB

from dfly.httpd import FileSlice, send_file_slice

BODY = 8 * MiB   # far more than a socket pair's buffers hold


def _pair(timeout_s: float):
    sender, reader = socket.socketpair()
    sender.settimeout(timeout_s)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    return sender, reader


def _read_all(sock: socket.socket, into: bytearray) -> threading.Thread:
    def run():
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return
            into.extend(chunk)
    thread = threading.Thread(target=run, name="test-reader", daemon=True)
    thread.start()
    return thread


@pytest.fixture
def body(tmp_path):
    path = tmp_path / "body"
    data = bytes(range(256)) * (BODY // 256)
    path.write_bytes(data)
    return str(path), data


@pytest.mark.time_limit(30)
@pytest.mark.parametrize("offset,count", [(0, BODY), (12345, 3 * MiB + 7)])
def test_a_slice_goes_out_whole_through_a_full_socket(body, offset, count):
    path, data = body
    sender, reader = _pair(10)
    got = bytearray()
    thread = _read_all(reader, got)
    with open(path, "rb") as source:
        sent = send_file_slice(sender, source, FileSlice(path, offset, count))
    sender.close()
    thread.join(10)
    reader.close()
    assert sent == count
    assert bytes(got) == data[offset:offset + count]


@pytest.mark.time_limit(30)
def test_a_file_shorter_than_the_slice_ends_it_short(body):
    path, data = body
    sender, reader = _pair(10)
    got = bytearray()
    thread = _read_all(reader, got)
    with open(path, "rb") as source:
        sent = send_file_slice(sender, source, FileSlice(path, BODY - 1000, 5000))
    sender.close()
    thread.join(10)
    reader.close()
    assert sent == 1000
    assert bytes(got) == data[-1000:]


@pytest.mark.time_limit(30)
def test_a_reader_that_takes_nothing_times_the_send_out(body):
    path, _ = body
    sender, reader = _pair(0.5)
    try:
        with open(path, "rb") as source, pytest.raises(socket.timeout):
            send_file_slice(sender, source, FileSlice(path, 0, BODY))
    finally:
        sender.close()
        reader.close()
