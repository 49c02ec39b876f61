"""`dfly publish IMAGE|URL --supernode HOST:PORT --token-file FILE`: publish an
image or a file to every daemon subscribed to a matching topic.

The supernode preheats it into the cluster first (a preheat job with scope
all_peers, through POST /v1/publications) and logs the publication once all
of it is cached; this command follows that job as `dfly preheat` does and
prints the publication's seq. The daemons then fetch it on their own time
(their --subscribe-jitter and --subscribe-concurrency); `GET /v1/subscriptions`
shows how far each has come.

Exit codes: 0 published; 3 the preheat failed, nothing published (the
registry's or origin's reason is printed); 5 not finished by --timeout (it
goes on on the supernode, and is published if it succeeds); 2 a bad target or
flag (or a body the supernode refused); 1 anything else (token refused,
supernode unreachable).
"""
import time
from typing import Callable, Dict, List, TextIO

from dfly import preheat
from dfly.protocol import preheat as preheat_rules
from dfly.protocol import publications as rules
from dfly.supernode.client import SupernodeClient

EXIT_CODES = {0: "published: in the cluster's cache and in the publish log",
              1: "other error (token refused, supernode unreachable)",
              2: "usage error, or the supernode refused the request as malformed",
              3: "the preheat before the publish failed (the reason is printed); nothing published",
              5: "not finished within --timeout (it goes on on the supernode)"}


def publish_body(target: str, headers: Dict[str, str], platforms: List[str], plain_http: bool) -> dict:
    """The POST /v1/publications body; a bad target or flag fails here, not remotely."""
    kind, url = preheat_rules.target_url(target, plain_http)
    body = {"type": kind, "url": url, "headers": headers}
    if platforms:
        body["platform"] = ",".join(platforms)
    rules.parse_publish(body)
    return body


def run(client: SupernodeClient, body: dict, token: str, timeout_s: float, out: TextIO,
        tty: bool = False, clock: Callable[[], float] = time.monotonic) -> dict:
    """Publish and wait until it is logged; the finished job (its "publication": the seq)."""
    job = client.publish(body, token)
    out.write("publish of %s: preheat %d started on %s\n" % (body["url"], job["id"], client.address))
    job = preheat.follow(client, job, token, timeout_s, out, tty, clock)
    out.write("published as publication %s\n" % job.get("publication"))
    return job
