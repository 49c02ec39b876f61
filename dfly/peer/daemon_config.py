"""The daemon's settings: one table feeds `dfly daemon`'s flags and its config file."""
from dataclasses import dataclass
from typing import List

from dfly.auth import ops_token_file_option
from dfly.gossip.options import GossipOptions
from dfly.httpd import client_ipv6_prefix_option
from dfly.lifecycle import log_format_option
from dfly.options import option
from dfly.peer.config import (
    advertise_option,
    connect_timeout_option,
    kubernetes_account_dir_option,
    kubernetes_rack_label_option,
    location_from_kubernetes_option,
    location_option,
    parallel_option,
    piece_timeout_option,
    upload_listen_option,
)
from dfly.protocol.proxyrules import DEFAULT_RULES
from dfly.protocol.scrub import DEFAULT_SCRUB_RATE
from dfly.tls import TLSOptions


@dataclass(frozen=True)
class DaemonConfig(TLSOptions, GossipOptions):
    supernode: List[str] = option([], "supernode address; repeat to list fallbacks "
                                  "(none: everything comes straight from the source)",
                                  kind="address", metavar="HOST:PORT")
    listen: str = option("127.0.0.1:65001", "address of the registry mirror, HTTP proxy and daemon API",
                         kind="address", metavar="HOST:PORT")
    data_dir: str = option("", "where the cache and logs go (default: per-user data dir)",
                           metavar="DIR")
    registry_mirror: str = option("https://registry-1.docker.io",
                                  "upstream registry that /v2/ requests are mirrored from",
                                  kind="url", metavar="URL")
    proxy_rule: List[str] = option(list(DEFAULT_RULES),
                                   "proxy rule 'ACTION REGEX', ACTION p2p, p2p+https or direct; first "
                                   "match wins, unmatched requests pass straight through",
                                   metavar="'ACTION REGEX'")
    total_rate_limit: int = option(0, "cap on bytes per second downloaded by all tasks together, 0 = none",
                                   kind="size", metavar="RATE")
    upload_rate_limit: int = option(0, "cap on bytes per second served to other peers, 0 = none",
                                    kind="size", metavar="RATE")
    cache_size: int = option(20 << 30, "cache size limit; least recently used files go first",
                             kind="size", metavar="SIZE")
    cache_max_age_s: float = option(7 * 86400.0, "files unused this long are removed, 0 = never",
                                    kind="duration", flag="--cache-max-age", metavar="DURATION")
    proxy_fresh_for_s: float = option(60.0, "a proxied P2P file is reused this long before the "
                                      "supernode is asked again", kind="duration",
                                      flag="--proxy-fresh-for", metavar="DURATION")
    upstream_timeout_s: float = option(30.0, "timeout for connecting to and reading from an upstream",
                                       kind="duration", flag="--upstream-timeout", metavar="DURATION")
    insecure_upstream: bool = option(False, "do not verify upstream TLS certificates")
    fetch_timeout_s: float = option(1800.0, "give up on one download after this long",
                                    kind="duration", flag="--fetch-timeout", metavar="DURATION")
    advertise: str = advertise_option()
    upload_listen: str = upload_listen_option()
    parallel: int = parallel_option("pieces fetched at once per download")
    piece_timeout_s: float = piece_timeout_option()
    connect_timeout_s: float = connect_timeout_option()
    location: str = location_option()
    heartbeat_s: float = option(10.0, "how often the supernodes hear that this peer still serves",
                                kind="duration", flag="--heartbeat", metavar="DURATION")
    scrub_rate: int = option(DEFAULT_SCRUB_RATE, "bytes per second the background scrub reads to "
                             "check the cache against its digests, 0 = off", kind="size",
                             metavar="RATE")
    max_connections: int = option(512, "connections served at once; more get 503")
    tls_front: bool = option(False, "serve --listen (mirror, proxy, API) with TLS too, with "
                             "--tls-cert; local container runtimes usually speak plain HTTP to it")
    max_connections_per_client: int = option(128, "connections one client host may have open; "
                                             "more get 503 (0 = no limit)")
    log_level: str = option("info", "how much to log", choices=("debug", "info", "warning", "error"))
    outage_access_ttl_s: float = option(3600.0, "while the registry cannot be reached, a cached "
                                        "blob is served to a client the registry let read it "
                                        "this recently (same credentials, same repository), to "
                                        "no one else; 0 = never", kind="duration",
                                        flag="--outage-access-ttl", metavar="DURATION")
    log_format: str = log_format_option()
    ops_token_file: str = ops_token_file_option()
    location_from_kubernetes: bool = location_from_kubernetes_option()
    kubernetes_rack_label: str = kubernetes_rack_label_option()
    kubernetes_account_dir: str = kubernetes_account_dir_option()
    mirror_registry: List[str] = option([], "one more registry to mirror, as NAME=URL (NAME as "
                                        "image names spell it; containerd's hosts.toml sends it "
                                        "as ?ns=NAME) or URL; repeat for each: each keeps its "
                                        "own credentials and tokens", metavar="NAME=URL")
    subscribe: List[str] = option([], "fetch into the cache what the supernodes publish on this "
                                  "topic (dfly publish, preheats with scope all_peers): an image "
                                  "name with * wildcards (registry:5000/library/*), or a URL "
                                  "prefix (https://files.example.com/models/); repeatable",
                                  metavar="PATTERN")
    subscribe_platform: List[str] = option([], "of a published multi-platform image, fetch only "
                                           "the blobs of this platform (repeatable; default: all "
                                           "it was published with)", metavar="OS/ARCH")
    subscribe_concurrency: int = option(2, "items of publications fetched at once")
    subscribe_jitter_s: float = option(5.0, "a delivery starts after a random wait of up to this "
                                       "long, so hosts do not all start at the same moment",
                                       kind="duration", flag="--subscribe-jitter", metavar="DURATION")
    subscribe_poll_s: float = option(20.0, "how long one poll for publications waits at the "
                                     "supernode before it is sent again", kind="duration",
                                     flag="--subscribe-poll", metavar="DURATION")
    client_ipv6_prefix: int = client_ipv6_prefix_option()
