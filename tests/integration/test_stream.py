"""Client.stream: the file's bytes, in order, while pieces are still arriving;
errors reach the consumer; nothing is left in the data dir afterwards."""
import os

import pytest
from helpers import MiB, content

from dfly.errors import DigestMismatch, SourceError


def _stream_tmp(client):
    folder = os.path.join(client.data_dir, "peer", "tmp")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.mark.time_limit(30)
def test_stream_yields_the_files_exact_bytes_in_order(origin, supernode, client_factory):
    src = origin.add("streamed.bin", content(10 * MiB + 123, seed=30))   # three pieces, ragged end
    client = client_factory([supernode.address])

    received = bytearray()
    for chunk in client.stream(src.url, digest=src.digest):
        assert chunk, "empty chunk"
        assert chunk == src.data[len(received):len(received) + len(chunk)], "out of order"
        received += chunk
    assert bytes(received) == src.data
    assert client.last_result.via == "p2p"
    assert client.last_result.length == src.size
    assert _stream_tmp(client) == []


def test_stream_without_a_supernode_yields_the_files_bytes(origin, client_factory):
    src = origin.add("streamed.bin", content(3 * MiB, seed=31))
    client = client_factory([])
    assert b"".join(client.stream(src.url)) == src.data
    assert client.last_result.via == "source"
    assert _stream_tmp(client) == []


def test_stream_from_a_failing_origin_raises_source_error_to_the_consumer(
        origin, supernode, client_factory):
    src = origin.add("broken.bin", content(6 * MiB, seed=32))
    origin.fault("broken.bin", die_after=5 * MiB)
    client = client_factory([supernode.address])
    with pytest.raises(SourceError):
        for _ in client.stream(src.url):
            pass
    assert _stream_tmp(client) == []


def test_stream_with_a_wrong_digest_raises_before_the_end(origin, supernode, client_factory):
    src = origin.add("digested.bin", content(10 * MiB, seed=33))   # three pieces
    client = client_factory([supernode.address])
    received = bytearray()
    with pytest.raises(DigestMismatch):
        for chunk in client.stream(src.url, digest="sha256:" + "0" * 64):
            received += chunk
    assert len(received) < src.size   # the last piece never came out unchecked
    assert _stream_tmp(client) == []


@pytest.mark.time_limit(30)
def test_a_stream_abandoned_early_leaves_no_temporary_file_after_close(
        origin, supernode, client_factory):
    src = origin.add("abandoned.bin", content(10 * MiB, seed=34))
    client = client_factory([supernode.address])
    stream = client.stream(src.url)
    first = next(stream)
    assert src.data.startswith(first)
    stream.close()
    client.close()
    assert _stream_tmp(client) == []
