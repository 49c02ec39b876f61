"""The one place a supernode is wired: service + HTTP listener + logging."""
import logging
import os
import signal
import threading
from typing import Optional

from dfly.httpd import Listener, parse_hostport
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


def log_to(data_dir: str, level: str, name: str) -> None:
    """Log to stderr and to DATA_DIR/logs/NAME.log."""
    logs = os.path.join(data_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger("dfly")
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for handler in (logging.StreamHandler(), logging.FileHandler(os.path.join(logs, name + ".log"))):
        handler.setFormatter(fmt)
        root.addHandler(handler)


def run(config: SupernodeConfig, data_dir: str, ready: Optional[threading.Event] = None) -> int:
    """Serve until SIGINT or SIGTERM."""
    log_to(data_dir, config.log_level, "supernode")
    running = start(config, data_dir)
    log.info("supernode listening on %s:%d, data in %s", *running.listener.address, data_dir)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if ready is not None:
        ready.set()
    while not stop.wait(3600):
        pass
    log.info("supernode stopping")
    running.stop()
    return 0
