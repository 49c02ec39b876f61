"""A peer's download settings: one table feeds `dfly get`'s flags, the config
file and the keyword arguments of dfly.Client."""
from dataclasses import dataclass
from typing import List, Optional

from dfly.httpd import client_ipv6_prefix_option
from dfly.lifecycle import log_format_option
from dfly.options import option
from dfly.sources.config import SourceOptions
from dfly.tls import TLSOptions


# The uploader's and fetchers' settings, the same for `dfly get` and `dfly daemon`
# (each dataclass needs fields of its own, hence functions).
def advertise_option():
    return option("", "address other peers reach this host at "
                  "(default: the local address used to reach the supernode)", kind="host",
                  metavar="HOST")


def upload_listen_option():
    return option("0.0.0.0:0", "address the uploader listens on (on a wildcard host, the "
                  "family of the advertised address: IPv6 and IPv4 when that is IPv6)",
                  kind="address", metavar="HOST:PORT")


def parallel_option(help_text: str = "pieces fetched at once"):
    return option(4, help_text)


def piece_timeout_option():
    return option(30.0, "timeout for one connection or read while fetching a piece",
                  kind="duration", flag="--piece-timeout", metavar="DURATION")


def connect_timeout_option():
    return option(3.0, "timeout for a holder to accept a piece request's connection, and again "
                  "for the first byte of its answer (a stopped holder costs this, not "
                  "--piece-timeout)", kind="duration", flag="--connect-timeout", metavar="DURATION")


def location_option():
    return option("", "where this host runs, widest first: up to 4 labels of [A-Za-z0-9._-] "
                  "joined by '/' (e.g. eu-west/zone-a/rack-7); the supernode sends it to "
                  "peers sharing the longest prefix", kind="location",
                  metavar="REGION/ZONE/RACK")


def location_from_kubernetes_option():
    return option(False, "take --location from this node's labels in the Kubernetes API "
                  "(topology.kubernetes.io/region, /zone, and --kubernetes-rack-label), as "
                  "NODE_NAME with the pod's service account (which needs get on nodes)")


def kubernetes_rack_label_option():
    return option("", "node label whose value is the rack, third in the location (none: "
                  "region/zone only)", metavar="LABEL")


def kubernetes_account_dir_option():
    return option("/var/run/secrets/kubernetes.io/serviceaccount", "where the pod's service "
                  "account token and ca.crt are, for --location-from-kubernetes", metavar="DIR")


CLUSTER_FAILOVER_S = 15.0   # --failover's default with several supernodes


@dataclass(frozen=True)
class PeerConfig(TLSOptions, SourceOptions):
    supernode: List[str] = option([], "supernode address; repeat to list fallbacks",
                                  kind="address", metavar="HOST:PORT")
    data_dir: str = option("", "where temporary files, seeds and logs go (default: per-user data dir)",
                           metavar="DIR")
    rate_limit: int = option(0, "cap on this download's bytes per second, 0 = none (e.g. 20M)",
                             kind="size", metavar="RATE")
    timeout_s: float = option(0.0, "give up after this long, 0 = never (e.g. 10m)",
                              kind="duration", flag="--timeout", metavar="DURATION")
    no_back_source: bool = option(False, "never download from the source directly, even with no supernode")
    seed_for_s: float = option(300.0, "keep serving pieces after the download until idle this long, 0 = off",
                               kind="duration", flag="--seed-for", metavar="DURATION")
    advertise: str = advertise_option()
    upload_listen: str = upload_listen_option()
    parallel: int = parallel_option()
    failover_s: Optional[float] = option(None, "after the supernode in use dies, how long to keep "
                                         "trying the supernodes (a cluster re-owns a dead "
                                         "member's tasks) before the missing pieces come from "
                                         "the source (default: 15s with several --supernode, 0 "
                                         "with one: no one can take over)",
                                         kind="duration", flag="--failover", metavar="DURATION")
    piece_timeout_s: float = piece_timeout_option()
    connect_timeout_s: float = connect_timeout_option()
    location: str = location_option()
    log_format: str = log_format_option("the detached seeder's log lines")
    location_from_kubernetes: bool = location_from_kubernetes_option()
    kubernetes_rack_label: str = kubernetes_rack_label_option()
    kubernetes_account_dir: str = kubernetes_account_dir_option()
    client_ipv6_prefix: int = client_ipv6_prefix_option()   # the uploader's (and its seeder's)
