"""The supernode's settings: one table feeds its flags and its config file."""
from dataclasses import dataclass
from typing import List

from dfly.auth import ops_token_file_option
from dfly.gossip.options import GossipOptions
from dfly.httpd import client_ipv6_prefix_option
from dfly.lifecycle import log_format_option
from dfly.options import option
from dfly.protocol.scrub import DEFAULT_SCRUB_RATE
from dfly.protocol.tiers import DEFAULT_MAX_HOPS
from dfly.sources.config import SourceOptions
from dfly.tls import TLSOptions


@dataclass(frozen=True)
class SupernodeConfig(TLSOptions, SourceOptions, GossipOptions):
    listen: str = option("0.0.0.0:8002", "address to listen on ([::]:PORT: every IPv6 and IPv4 "
                         "address)", kind="address", metavar="HOST:PORT")
    advertise: str = option("", "address peers use to reach this supernode, if not --listen",
                            kind="address", metavar="HOST:PORT")
    data_dir: str = option("", "where the cache and logs go (default: per-user data dir)",
                           metavar="DIR")
    source_rate_limit: int = option(0, "cap on bytes per second read from all sources, 0 = none",
                                    kind="size", metavar="RATE")
    cache_size: int = option(20 << 30, "cache size limit; least recently used finished tasks go first",
                             kind="size", metavar="SIZE")
    source_timeout_s: float = option(30.0, "timeout for connecting to and reading from a source; "
                                     "a fetch that gets nothing for this long fails its task",
                                     kind="duration", flag="--source-timeout", metavar="DURATION")
    failure_ttl_s: float = option(60.0, "how long a failed source is remembered before a retry",
                                  kind="duration", flag="--failure-ttl", metavar="DURATION")
    revalidate_after_s: float = option(60.0, "age after which a cached source is revalidated",
                                       kind="duration", flag="--revalidate-after", metavar="DURATION")
    max_uploads_per_peer: int = option(4, "pieces one peer is asked to serve at once")
    max_uploads: int = option(4, "pieces the supernode serves at once for one task (few, so each "
                              "finishes early and peers spread it while the next one comes; as "
                              "many as a peer fetches at once, so the supernode's link stays full "
                              "when every receiver is busy)")
    peer_ttl_s: float = option(30.0, "peers silent this long are forgotten",
                               kind="duration", flag="--peer-ttl", metavar="DURATION")
    assignment_start_timeout_s: float = option(
        5.0, "a piece assigned from the supernode that the peer has not started fetching by "
        "then is given to others", kind="duration", flag="--assignment-start-timeout",
        metavar="DURATION")
    max_assignments_per_peer: int = option(16, "pieces one peer may be fetching (assigned, "
                                           "not reported) at once")
    allow_source: List[str] = option([], "sources the supernode may fetch: a scheme (https:), an "
                                     "address or CIDR (10.0.0.0/8), a host name (*.example.com); "
                                     "when given, only those", kind="source_rule", metavar="RULE")
    deny_source: List[str] = option([], "sources the supernode must not fetch (same forms as "
                                    "--allow-source; link-local is denied anyway)", kind="source_rule",
                                    metavar="RULE")
    max_new_tasks_per_client: int = option(240, "new tasks (source URLs) one client host may "
                                           "register a minute; more get 429; 0 = no limit")
    max_source_fetches: int = option(16, "sources fetched at once; more tasks wait their turn")
    max_source_fetches_per_client: int = option(8, "of those, how many for the tasks one client "
                                                "host registered (its others wait; 0 = no share)")
    task_idle_ttl_s: float = option(600.0, "a task without peers this long leaves memory (its "
                                    "whole pieces stay on disk: cached, or resumed by the next get)",
                                    kind="duration", flag="--task-idle-ttl", metavar="DURATION")
    max_connections: int = option(1024, "connections served at once; more get 503")
    max_connections_per_client: int = option(256, "connections one client host may have open; "
                                             "more get 503 (0 = no limit)")
    log_level: str = option("info", "how much to log", choices=("debug", "info", "warning", "error"))
    cluster: List[str] = option([], "every member of this supernode cluster, this one included "
                                "(HOST:PORT,[IPV6]:PORT,... or repeated)", kind="address",
                                metavar="MEMBERS")
    cluster_secret: str = option("", "shared secret of the cluster; members with another are refused",
                                 metavar="SECRET")
    member_dead_after_s: float = option(3.0, "a member silent this long is dead and its tasks re-owned",
                                        kind="duration", flag="--member-dead-after", metavar="DURATION")
    adopt_grace_s: float = option(2.0, "after taking over a task, how long peers get to re-announce "
                                  "their pieces before the missing ones are fetched from the source",
                                  kind="duration", flag="--adopt-grace", metavar="DURATION")
    trust_peer_hosts: bool = option(False, "hand a peer out at the host it advertises (get/daemon "
                                    "--advertise: NAT, several interfaces); by default at the "
                                    "address its registration came from, so no peer can send "
                                    "others to a third host")
    scrub_rate: int = option(DEFAULT_SCRUB_RATE, "bytes per second the background scrub reads to "
                             "check the cache against its digests, 0 = off (copies left mid-write "
                             "by a crash are still checked at start-up)", kind="size", metavar="RATE")
    preheat_token_file: str = option("", "file holding the token preheat callers (Harbor) send as "
                                     "'Authorization: Bearer TOKEN'; without it preheat is off",
                                     metavar="FILE")
    max_preheats: int = option(2, "preheat jobs run at once (more wait their turn)")
    max_preheats_per_client: int = option(4, "preheat jobs one client host may have waiting or "
                                          "running; more get 429")
    preheat_timeout_s: float = option(1800.0, "a preheat job not finished by then fails",
                                      kind="duration", flag="--preheat-timeout", metavar="DURATION")
    ignore_locations: bool = option(False, "schedule as if no peer gave a --location (the bytes "
                                    "moved within and across zones are still counted)")
    log_format: str = log_format_option()
    ops_token_file: str = ops_token_file_option()
    upstream_supernode: List[str] = option([], "a member of the upstream supernode cluster (tiers): "
                                           "tasks this cluster lacks are fetched from there as "
                                           "its peer, not from the origin (repeat for each "
                                           "member); the origin only when none answers",
                                           kind="address", metavar="HOST:PORT")
    upstream_max_hops: int = option(DEFAULT_MAX_HOPS, "supernodes a registration may have "
                                    "passed through tiers; one that passed more is refused (508)")
    upstream_tls_ca: str = option("", "CA certificates (PEM) the upstream cluster's certificates "
                                  "chain to, when not this cluster's --tls-ca (with it, or the "
                                  "two below, the upstream is dialled with these instead of "
                                  "this supernode's own --tls-* files)", metavar="FILE")
    upstream_tls_cert: str = option("", "client certificate (PEM) shown to the upstream cluster "
                                    "(its --tls-client-auth)", metavar="FILE")
    upstream_tls_key: str = option("", "private key of --upstream-tls-cert (PEM)", metavar="FILE")
    upstream_upload_listen: str = option("0.0.0.0:0", "address this supernode's uploader "
                                         "listens on while it is a peer of its upstream cluster",
                                         kind="address", metavar="HOST:PORT")
    publication_keep_s: float = option(7 * 86400.0, "publications (dfly publish, preheats with scope "
                                       "all_peers) older than this leave the log: a daemon down "
                                       "longer misses them", kind="duration",
                                       flag="--publication-keep", metavar="DURATION")
    publication_keep_count: int = option(1000, "at most this many publications are kept (the "
                                         "oldest leave first)")
    cut_through: bool = option(True, "also offer a piece from a peer still receiving it (a "
                               "relay of its verified blocks) when no peer holds it whole "
                               "(docs/BENCHMARKS.md: on the testbed's links, which pass small "
                               "packets first, as a Linux host's do, as fast or faster)")
    free_relay_slots: bool = option(False, "with cut-through, a fetch from a relay holds none of "
                                    "the requester's --parallel slots (up to --parallel + 16 "
                                    "fetches); off: it holds one like any other, which keeps this "
                                    "supernode's link full (bench/swarm_sim.py)")
    fanout: int = option(16, "with cut-through, in a swarm of at most this many peers the "
                         "supernode sends a different piece to each peer at once and each "
                         "relays its piece to all the others (a fetch from such a relay holds "
                         "no --parallel slot); 0: off, --max-uploads pieces at once "
                         "(bench/swarm_sim.py --fanout)")
    client_ipv6_prefix: int = client_ipv6_prefix_option()
