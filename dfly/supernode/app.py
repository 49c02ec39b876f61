"""The one place a supernode is wired: service + HTTP listener + logging."""
import logging
import os
import threading
import time
from dataclasses import replace
from typing import Callable, Optional

from dfly import __version__, datadir
from dfly.auth import read_ops_token
from dfly.gossip.cluster import GossipMembership, cluster_secret
from dfly.gossip.node import member_from_config, resolve_joins
from dfly.httpd import Listener
from dfly.lifecycle import catch_signals, log_to, serve_until_signalled
from dfly.protocol.address import format_address, loopback_for, parse_address
from dfly.protocol.preheat import Limits
from dfly.protocol.publications import Retention
from dfly.supernode.cluster import Membership
from dfly.supernode.config import SupernodeConfig
from dfly.supernode.preheat import Preheater, read_token
from dfly.supernode.publications import MemberCopier, PublicationLog, PubSub
from dfly.supernode.server import SupernodeApp
from dfly.supernode.service import Supernode
from dfly.tls import TLS

log = logging.getLogger("dfly.supernode")


class RunningSupernode:
    """A started supernode; `address` is where it listens (port 0 resolved)."""

    def __init__(self, config: SupernodeConfig, data_dir: str,
                 cluster_for: Optional[Callable[[int], Membership]] = None):
        ops_token = read_ops_token(config.ops_token_file)   # ValueError: a clear line, exit 2
        self.gossip = None
        # before anything reads the data dir: a second supernode on it stops here (exit 2)
        self.data_lock = datadir.hold(data_dir, "supernode", "dfly supernode")
        try:
            if config.gossip and cluster_for is None:
                config, cluster_for = self._gossip_mode(config)
            self._wire(config, data_dir, ops_token, cluster_for)
        except BaseException:   # a taken --listen, say: the gossip sockets must not linger
            if self.gossip is not None:
                self.gossip.stop(leave=False)
            self.data_lock.release()
            raise

    def _wire(self, config: SupernodeConfig, data_dir: str, ops_token,
              cluster_for: Optional[Callable[[int], Membership]]) -> None:
        self.service = Supernode(config, data_dir, source_credentials=gather_credentials(config))
        self.preheater = Preheater(self.service, read_token(config.preheat_token_file),
                                   config.max_preheats, config.preheat_timeout_s,
                                   Limits(max_per_client=config.max_preheats_per_client,
                                          client_ipv6_prefix=config.client_ipv6_prefix))
        self.publications = PublicationLog(os.path.join(data_dir, "publications"),
                                           Retention(config.publication_keep_s,
                                                     config.publication_keep_count))
        self.preheater.publications = self.publications   # scope all_peers: published
        pubsub = PubSub(self.publications, self.service, self.preheater)
        self.listener = Listener("supernode-http", parse_address(config.listen, 8002),
                                 SupernodeApp(self.service, self.preheater, ops_token, pubsub),
                                 config.max_connections,
                                 tls=self.service.tls,
                                 max_connections_per_client=config.max_connections_per_client,
                                 client_ipv6_prefix=config.client_ipv6_prefix)
        if cluster_for is not None:   # gossip mode: our member name needs the port just bound
            self.service.use_membership(cluster_for(self.listener.address[1]))
        self.service.start()   # after the listener is bound: a bad --listen starts nothing
        self.preheater.start()
        self.copier = MemberCopier(self.publications, self.service, self.service._sign,
                                   max(0.2, config.member_dead_after_s / 4)).start()
        self.listener.start()
        if self.gossip is not None:
            self.gossip.swim.me.meta["sn"] = self.service.me
            self.gossip.start(resolve_joins(config.join))

    def _gossip_mode(self, config: SupernodeConfig):
        """--gossip: the cluster's members come from gossip, not --cluster."""
        if config.cluster:
            raise ValueError("--gossip finds the members itself: leave out --cluster")
        self.gossip = member_from_config(config, parse_address(config.listen, 8002), {"v": __version__},
                                         TLS.from_config(config))
        if not config.cluster_secret:   # one key file configures both
            config = replace(config, cluster_secret=cluster_secret(self.gossip.keyring))
        host = self.gossip.address[0]
        return config, lambda port: GossipMembership(config.advertise or format_address(host, port),
                                                     self.gossip, time.monotonic())

    @property
    def address(self) -> str:
        host, port = self.listener.address
        return format_address(loopback_for(host), port)

    def stop(self) -> None:
        if self.gossip is not None:
            self.gossip.stop()
        self.publications.stop()   # waiting polls answer now
        self.listener.stop()
        self.copier.stop()
        self.preheater.stop()
        self.service.stop()
        self.data_lock.release()   # last: the data dir is left alone from here

    def hangup(self) -> None:
        """SIGHUP: load the TLS certificate and key again (for new connections)."""
        if self.service.tls is not None:
            self.service.tls.reload()


def gather_credentials(config: SupernodeConfig):
    """Source credentials from the environment and the usual files (sources/credentials.py):
    read here, where the supernode is wired, never by the sources themselves."""
    from dfly.sources.config import source_options_of
    from dfly.sources.credentials import gather
    return gather(source_options_of(config), os.environ)


def start(config: SupernodeConfig, data_dir: str) -> RunningSupernode:
    os.makedirs(data_dir, exist_ok=True)
    return RunningSupernode(config, data_dir)


def run(config: SupernodeConfig, data_dir: str, ready: Optional[threading.Event] = None,
        notifier=None) -> int:
    """Serve until SIGINT or SIGTERM; `notifier` (notify.Notifier) tells systemd."""
    log_to(data_dir, config.log_level, "supernode", config.log_format)
    catch_signals()   # before "listening on": a stop sent on seeing it must not be lost
    if notifier is not None:
        notifier.status("supernode starting (data in %s)" % data_dir)
    running = start(config, data_dir)
    listening = format_address(*running.listener.address)
    log.info("supernode listening on %s, data in %s", listening, data_dir)
    return serve_until_signalled(running, "supernode", ready, notifier,
                                 "supernode serving on %s" % listening)
