"""`dfly preheat IMAGE|URL --supernode HOST:PORT --token-file FILE`: start a preheat
job on a supernode (through the same Dragonfly 2 job API Harbor 2.12+ calls) and
follow it to its end, one progress line on a terminal, a summary after.

Exit codes: 0 the job succeeded; 3 it failed (the registry's or origin's reason
is printed); 5 it had not finished by --timeout (it goes on on the supernode);
2 a bad target or flag (or a body the supernode refused); 1 anything else (the
token refused, the supernode unreachable).
"""
import time
from typing import Callable, Dict, List, Optional, TextIO

from dfly.errors import DownloadTimeout, SourceError
from dfly.protocol import preheat as rules
from dfly.supernode.client import SupernodeClient

EXIT_CODES = {0: "the preheat succeeded", 1: "other error (token refused, supernode unreachable)",
              2: "usage error, or the supernode refused the request as malformed",
              3: "the preheat failed: the registry's or origin's reason is printed",
              5: "not finished within --timeout (it goes on on the supernode)"}
POLL_S = 0.5


def job_body(target: str, headers: Dict[str, str], platforms: List[str], scope: str,
             plain_http: bool) -> dict:
    """The job body (as Harbor 2.12 sends it, plus the platforms asked for)."""
    kind, url = rules.target_url(target, plain_http)
    args = {"type": kind, "url": url, "headers": headers, "scope": scope}
    if platforms:
        args["platform"] = ",".join(platforms)
    rules.parse_v2({"type": "preheat", "args": args})   # a bad flag fails here, not remotely
    return {"type": "preheat", "args": args}


def run(client: SupernodeClient, body: dict, token: str, timeout_s: float, out: TextIO,
        tty: bool = False, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep) -> dict:
    """Start the job and wait for its end; the last view of it. SourceError when it
    failed, DownloadTimeout when it is not over by `timeout_s`."""
    job = client.preheat(body, token)
    out.write("preheat %d started on %s: %s\n" % (job["id"], client.address, body["args"]["url"]))
    return follow(client, job, token, timeout_s, out, tty, clock, sleep)


def follow(client: SupernodeClient, job: dict, token: str, timeout_s: float, out: TextIO,
           tty: bool = False, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> dict:
    """Wait for a started job's end (`dfly publish` starts one too); as run."""
    deadline = clock() + timeout_s if timeout_s > 0 else None
    while job.get("state") == "PENDING":
        if deadline is not None and clock() >= deadline:
            _line(out, tty, job, end=True)
            raise DownloadTimeout("preheat %d not finished within %gs (it goes on on the "
                                  "supernode)" % (job["id"], timeout_s))
        _line(out, tty, job)
        sleep(POLL_S)
        job = client.preheat_job(job["id"], token)
    _line(out, tty, job, end=True)
    state = job["result"]["job_states"][0]
    if job["state"] != "SUCCESS":
        raise SourceError("preheat %d failed: %s" % (job["id"], state.get("error") or "no reason given"))
    if state.get("note"):
        out.write("note: %s\n" % state["note"])
    return job


def _line(out: TextIO, tty: bool, job: dict, end: bool = False) -> None:
    progress = job.get("progress") or {}
    what = "blobs" if (job.get("args") or {}).get("type") == "image" else "files"
    text = "preheat %s: %s, %d of %d %s cached" % (job["id"], job["state"], progress.get("done", 0),
                                                  progress.get("total", 0), what)
    if tty:
        out.write("\r" + text + ("\n" if end else " "))
    elif end:
        out.write(text + "\n")
    out.flush()


def read_token(path: Optional[str]) -> str:
    if not path:
        raise ValueError("--token-file is required: the supernode's preheat token")
    try:
        with open(path) as f:
            token = f.read().strip()
    except OSError as e:
        raise ValueError("--token-file %s: %s" % (path, e.strerror or e))
    if not token:
        raise ValueError("--token-file %s is empty" % path)
    return token
