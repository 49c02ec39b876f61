"""The one place a supernode is wired: service + HTTP listener + logging."""
import logging
import os
import threading
from typing import Optional

from dfly.httpd import Listener, parse_hostport
from dfly.lifecycle import log_to, serve_until_signalled
from dfly.supernode.config import SupernodeConfig
from dfly.supernode.server import SupernodeApp
from dfly.supernode.service import Supernode

log = logging.getLogger("dfly.supernode")


class RunningSupernode:
    """A started supernode; `address` is where it listens (port 0 resolved)."""

    def __init__(self, config: SupernodeConfig, data_dir: str):
        self.service = Supernode(config, data_dir).start()
        host, port = parse_hostport(config.listen, 8002)
        self.listener = Listener("supernode-http", (host, port), SupernodeApp(self.service),
                                 config.max_connections).start()

    @property
    def address(self) -> str:
        host, port = self.listener.address
        return "%s:%d" % ("127.0.0.1" if host in ("0.0.0.0", "") else host, port)

    def stop(self) -> None:
        self.listener.stop()
        self.service.stop()


def start(config: SupernodeConfig, data_dir: str) -> RunningSupernode:
    os.makedirs(data_dir, exist_ok=True)
    return RunningSupernode(config, data_dir)


def run(config: SupernodeConfig, data_dir: str, ready: Optional[threading.Event] = None) -> int:
    """Serve until SIGINT or SIGTERM."""
    log_to(data_dir, config.log_level, "supernode")
    running = start(config, data_dir)
    log.info("supernode listening on %s:%d, data in %s", *running.listener.address, data_dir)
    return serve_until_signalled(running, "supernode", ready)
