"""`dfly bench`'s settings: one table feeds its flags and its config file."""
from dataclasses import dataclass

from dfly.options import option
from dfly.tls import TLSOptions


@dataclass(frozen=True)
class BenchConfig(TLSOptions):
    supernode: str = option("", "the supernode to measure", kind="address", metavar="HOST:PORT",
                            required=True)
    peers: int = option(10, "simulated peers, each with its own uploader port")
    waves: int = option(1, "start the peers in this many equal waves")
    wave_interval_s: float = option(1.0, "time between the starts of two waves",
                                    kind="duration", flag="--wave-interval", metavar="DURATION")
    parallel: int = option(4, "pieces each simulated peer fetches at once")
    max_live: int = option(0, "simulated peers downloading at once at most: a wave's peers start "
                           "as others finish (0: no bound)", metavar="N")
    advertise: str = option("", "address the simulated peers are reached at "
                            "(default: the local address used to reach the supernode)", kind="host",
                            metavar="HOST")
    upload_listen: str = option("0.0.0.0:0", "address each simulated peer's uploader listens on "
                                "(port 0: one free port each)", kind="address", metavar="HOST:PORT")
    data_dir: str = option("", "where the downloaded copies go while the bench runs "
                           "(default: a temporary folder, removed afterwards)", metavar="DIR")
    timeout_s: float = option(300.0, "give up on any peer not done this long after the first start",
                              kind="duration", flag="--timeout", metavar="DURATION")
    piece_timeout_s: float = option(30.0, "timeout for one connection or read while fetching a piece",
                                    kind="duration", flag="--piece-timeout", metavar="DURATION")
