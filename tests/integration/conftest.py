"""Supernodes and clients for the integration tier: real listeners on
127.0.0.1:0, state under tmp_path, everything stopped or closed at teardown
(clients first, then supernodes, then the origin: the reverse of setup)."""
import os

import pytest
from daemons import DaemonFactory

from dfly.client import Client
from dfly.supernode import app
from dfly.supernode.client import SupernodeClient
from dfly.supernode.config import SupernodeConfig


@pytest.fixture
def supernode_factory(tmp_path):
    """start(data_dir=None, **SupernodeConfig fields) -> RunningSupernode."""
    started = []

    def start(data_dir=None, **settings):
        settings.setdefault("listen", "127.0.0.1:0")
        settings.setdefault("source_timeout_s", 10.0)
        if data_dir is None:   # one supernode per data dir (dfly/datadir.py): a later one its own
            data_dir = tmp_path / ("supernode%d" % len(started) if started else "supernode")
        running = app.start(SupernodeConfig(**settings), str(data_dir))
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        running.stop()


@pytest.fixture
def supernode(supernode_factory):
    return supernode_factory()


@pytest.fixture
def sn_client(supernode):
    """The supernode's own client, for looking at tasks and playing a fake peer."""
    client = SupernodeClient(supernode.address, timeout_s=5)
    yield client
    client.close()


@pytest.fixture
def client_factory(tmp_path):
    """make(supernodes=(), **PeerConfig fields) -> Client with its own data dir."""
    made = []

    def make(supernodes=(), **settings):
        settings.setdefault("upload_listen", "127.0.0.1:0")
        settings.setdefault("piece_timeout_s", 5.0)
        if "data_dir" not in settings:
            settings["data_dir"] = str(tmp_path / ("peer%d" % len(made)))
            os.makedirs(settings["data_dir"], exist_ok=True)
        client = Client(list(supernodes), **settings)
        made.append(client)
        return client

    yield make
    for client in reversed(made):
        client.close()


@pytest.fixture
def downloads(tmp_path):
    """A folder for download targets."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def daemons(tmp_path):
    """start(**DaemonConfig fields) -> a running `dfly daemon`; all stopped at teardown."""
    factory = DaemonFactory(str(tmp_path / "daemons"))
    yield factory
    factory.stop_all()


@pytest.fixture
def token_server(tmp_path):
    """A registry token server (as Docker Hub's and Harbor's) for USER:PASSWORD."""
    from registry import PASSWORD, USER
    from tokens import HAVE_SIGNER, TokenServer
    if not HAVE_SIGNER:
        pytest.skip("the token server signs with the cryptography package or the openssl command")
    server = TokenServer(str(tmp_path / "token-signer.pem"), USER, PASSWORD)
    yield server
    server.stop()


@pytest.fixture
def token_registry(tmp_path, token_server):
    """Debian's docker-registry asking for the token server's bearer tokens."""
    from registry import Registry
    running = Registry(str(tmp_path / "token-registry"), token_realm=token_server.realm,
                       token_cert=token_server.cert_path)
    yield running
    running.stop()
