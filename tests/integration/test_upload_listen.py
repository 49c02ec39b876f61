"""A daemon's --upload-listen is checked when it starts, as its --listen is: its
uploader otherwise starts at the first download (it listens on the family the
peer advertises), far too late to tell the user that the port is taken."""
import os
import socket

import pytest

from dfly.client import Client
from dfly.errors import CannotListen
from dfly.peer import daemon
from dfly.peer.daemon_config import DaemonConfig
from dfly.protocol import handoff


@pytest.fixture()
def held_port():
    """A 127.0.0.1 port another socket listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def test_a_daemon_whose_upload_port_is_taken_does_not_start(tmp_path, held_port):
    config = DaemonConfig(listen="127.0.0.1:0", upload_listen="127.0.0.1:%d" % held_port,
                          registry_mirror="")
    with pytest.raises(CannotListen, match="cannot listen on 127.0.0.1:%d" % held_port):
        daemon.start(config, str(tmp_path))
    assert not os.path.exists(os.path.join(str(tmp_path), handoff.TOKEN_FILE))


def test_a_wildcard_upload_port_taken_on_loopback_is_refused_before_any_download(tmp_path,
                                                                                 held_port):
    client = Client(data_dir=str(tmp_path), upload_listen="0.0.0.0:%d" % held_port)
    with pytest.raises(CannotListen):
        client.claim_upload_address()
    assert client.uploader_address is None
    client.close()


def test_an_upload_address_with_a_host_starts_the_uploader_at_once(tmp_path):
    with Client(data_dir=str(tmp_path), upload_listen="127.0.0.1:0") as client:
        client.claim_upload_address()
        host, port = client.uploader_address
        assert host == "127.0.0.1" and port > 0
        socket.create_connection((host, port), timeout=5).close()
