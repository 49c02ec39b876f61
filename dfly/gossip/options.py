"""The gossip settings the daemon and the supernode share: each config dataclass
inherits these fields, so both have the same flags and config keys."""
from dataclasses import dataclass
from typing import List

from dfly.options import option


@dataclass(frozen=True)
class GossipOptions:
    gossip: bool = option(False, "find the other members by gossip (SWIM) through --join instead "
                          "of a fixed list; needs --gossip-key-file")
    join: List[str] = option([], "gossip address of a member to join; repeat or separate with "
                             "commas; a name joins every address it resolves to",
                             kind="address", metavar="HOST:PORT")
    gossip_listen: str = option("", "UDP and TCP address of the gossip protocol (default: port "
                                "7946 on the --listen host)", kind="address", metavar="HOST:PORT")
    gossip_key_file: str = option("", "gossip keys, one a line, each at least 16 characters: the "
                                  "first signs, every one verifies (roll keys without downtime)",
                                  metavar="FILE")
    gossip_profile: str = option("lan", "gossip timings: lan (memberlist's defaults) or fast "
                                 "(deaths known in about a third of the time, more traffic)",
                                 choices=("lan", "fast"))
