"""Daemons for the tests: `dfly daemon` wired in-process on 127.0.0.1:0, each
with its own data dir, stopped in reverse order at teardown."""
import hashlib
import http.client
import json
import os
from typing import List

from dfly.peer import daemon
from dfly.peer.daemon_client import DaemonClient
from dfly.peer.daemon_config import DaemonConfig


class DaemonFactory:
    def __init__(self, root: str):
        self.root = root
        self.started: List[daemon.RunningDaemon] = []

    def start(self, **settings) -> daemon.RunningDaemon:
        settings.setdefault("listen", "127.0.0.1:0")
        settings.setdefault("upload_listen", "127.0.0.1:0")
        settings.setdefault("piece_timeout_s", 5.0)
        settings.setdefault("upstream_timeout_s", 5.0)
        settings.setdefault("fetch_timeout_s", 30.0)
        settings.setdefault("registry_mirror", "")
        data_dir = settings.pop("data_dir", None) or os.path.join(self.root, "daemon%d" % len(self.started))
        running = daemon.start(DaemonConfig(**settings), data_dir)
        self.started.append(running)
        return running

    def stop(self, running: daemon.RunningDaemon) -> None:
        self.started.remove(running)
        running.stop()

    def stop_all(self) -> None:
        while self.started:
            self.started.pop().stop()


def handoff_client(running: daemon.RunningDaemon) -> DaemonClient:
    """The client `dfly get` uses, holding the daemon's token (as its user would)."""
    return DaemonClient(running.address, token=running.handoff_token)


def stats(running: daemon.RunningDaemon) -> dict:
    host, port = running.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/v1/stats")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def fetch(address: str, method: str, path: str, headers=None, body=None):
    """(status, headers dict lower-cased, body) of one request to `address` (host:port)."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def scrape(address: str) -> dict:
    """Every sample of a program's /metrics (Prometheus text 0.0.4): "name{labels}" -> value."""
    status, headers, body = fetch(address, "GET", "/metrics")
    assert status == 200 and headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def registry_blob(origin, data: bytes, served: bytes = b"", repo: str = "team/app"):
    """Lay out the test origin as a registry holding the blob `data` (answering `served`
    instead, when given): (origin file name, request path, digest)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    os.makedirs(os.path.join(origin.root, "v2", repo, "blobs"), exist_ok=True)
    name = "v2/%s/blobs/%s" % (repo, digest)
    origin.add(name, served or data)
    return name, "/" + name, digest
