"""The one place a supernode is wired: service + HTTP listener + logging."""
import logging
import os
import threading
from typing import Optional

from dfly.httpd import Listener
from dfly.lifecycle import log_to, serve_until_signalled
from dfly.protocol.address import format_address, loopback_for, parse_address
from dfly.supernode.config import SupernodeConfig
from dfly.supernode.server import SupernodeApp
from dfly.supernode.service import Supernode

log = logging.getLogger("dfly.supernode")


class RunningSupernode:
    """A started supernode; `address` is where it listens (port 0 resolved)."""

    def __init__(self, config: SupernodeConfig, data_dir: str):
        self.service = Supernode(config, data_dir)
        self.listener = Listener("supernode-http", parse_address(config.listen, 8002),
                                 SupernodeApp(self.service), config.max_connections,
                                 tls=self.service.tls,
                                 max_connections_per_client=config.max_connections_per_client)
        self.service.start()   # after the listener is bound: a bad --listen starts nothing
        self.listener.start()

    @property
    def address(self) -> str:
        host, port = self.listener.address
        return format_address(loopback_for(host), port)

    def stop(self) -> None:
        self.listener.stop()
        self.service.stop()

    def hangup(self) -> None:
        """SIGHUP: load the TLS certificate and key again (for new connections)."""
        if self.service.tls is not None:
            self.service.tls.reload()


def start(config: SupernodeConfig, data_dir: str) -> RunningSupernode:
    os.makedirs(data_dir, exist_ok=True)
    return RunningSupernode(config, data_dir)


def run(config: SupernodeConfig, data_dir: str, ready: Optional[threading.Event] = None,
        notifier=None) -> int:
    """Serve until SIGINT or SIGTERM; `notifier` (notify.Notifier) tells systemd."""
    log_to(data_dir, config.log_level, "supernode")
    if notifier is not None:
        notifier.status("supernode starting (data in %s)" % data_dir)
    running = start(config, data_dir)
    listening = format_address(*running.listener.address)
    log.info("supernode listening on %s, data in %s", listening, data_dir)
    return serve_until_signalled(running, "supernode", ready, notifier,
                                 "supernode serving on %s" % listening)
