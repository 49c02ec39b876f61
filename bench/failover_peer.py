"""One peer of bench/failover.py: a dfly.Client download in its own process
(as on its own host), writing a timestamped event log the benchmark reads.

    python3 bench/failover_peer.py '{"pyz": ..., "url": ..., "out": ..., "digest": ...,
        "supernodes": [...], "data_dir": ..., "failover_s": 30, "events": PATH}'

Events are JSON lines with `t` = time.monotonic() (CLOCK_MONOTONIC, the same
clock in every process on the host, so the benchmark can compare them with the
moment it killed the owner): "progress" after every verified piece (from the
Client's progress callback), "log" for every dfly log record at INFO or above
(the client's "trying the next supernode" is the moment it noticed the owner
died), then "done" or "error". After that the peer keeps serving its pieces to
the others until its stdin closes (what `dfly get --seed-for` does), then leaves.
"""
import json
import logging
import sys
import threading
import time


class EventLog:
    def __init__(self, path: str):
        self._f = open(path, "w", buffering=1)
        self._lock = threading.Lock()

    def emit(self, ev: str, **fields) -> None:
        fields.update(ev=ev, t=time.monotonic())
        line = json.dumps(fields) + "\n"
        with self._lock:
            self._f.write(line)

    def close(self) -> None:
        self._f.close()


class _Logged(logging.Handler):
    def __init__(self, events: EventLog):
        super().__init__(logging.INFO)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        self.events.emit("log", logger=record.name, level=record.levelname, msg=record.getMessage())


def main() -> int:
    cfg = json.loads(sys.argv[1])
    sys.path.insert(0, cfg["pyz"])
    from dfly import Client, DflyError

    events = EventLog(cfg["events"])
    dfly_log = logging.getLogger("dfly")
    dfly_log.setLevel(logging.INFO)
    dfly_log.addHandler(_Logged(events))

    def progress(done, total, split):
        events.emit("progress", done=done, total=total, source=split.source,
                    supernode=split.supernode, peers=split.peers)

    client = Client(cfg["supernodes"], data_dir=cfg["data_dir"], upload_listen="127.0.0.1:0",
                    failover_s=cfg["failover_s"], timeout_s=cfg.get("timeout_s", 0),
                    seed_for_s=600)   # serve until close(), which the benchmark decides
    rc = 0
    try:
        events.emit("started")
        try:
            result = client.download(cfg["url"], cfg["out"], digest=cfg["digest"], progress=progress)
            events.emit("done", result=result.to_json())
        except DflyError as e:
            events.emit("error", kind=type(e).__name__, msg=str(e))
            rc = 1
        sys.stdin.read()   # keep seeding until the benchmark says everyone is done
    finally:
        client.close()
        events.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
