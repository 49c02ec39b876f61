"""A real Prometheus (Debian's `prometheus`) scrapes a supernode and a daemon
while a small swarm runs; its query API must show the byte counters reaching
the file sizes, split by where the bytes came from. `promtool check metrics`
must accept both /metrics outputs.

Prometheus listens on 127.0.0.1 port 0 (its port is read back from /proc),
keeps its data under tmp, and knows only the two static loopback targets: no
remote write, no service discovery, no other address. One instance for the
module, killed after."""
import json
import os
import re
import shutil
import subprocess
import urllib.parse
import urllib.request

import pytest
from daemons import DaemonFactory, fetch, registry_blob, stats
from helpers import MiB, content, run_all, wait_until
from origin import Origin

from dfly.client import Client
from dfly.supernode import app
from dfly.supernode.config import SupernodeConfig

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None,
                                reason="needs Debian's prometheus package (prometheus, promtool)")

SCRAPE_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: supernode
    static_configs:
      - targets: ['{supernode}']
  - job_name: daemon
    static_configs:
      - targets: ['{daemon}']
"""


def listening_ports(pid: int) -> list:
    """The TCP ports process `pid` listens on (from /proc: its sockets' inodes)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        found = re.match(r"socket:\[(\d+)\]", target)
        if found:
            inodes.add(found.group(1))
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:   # 0A: LISTEN
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class Prometheus:
    def __init__(self, folder: str, targets: dict):
        config = os.path.join(folder, "prometheus.yml")
        with open(config, "w") as f:
            f.write(SCRAPE_CONFIG.format(**targets))
        self.log = open(os.path.join(folder, "prometheus.log"), "wb")
        self.process = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + config, "--storage.tsdb.path=" + os.path.join(folder, "data"),
             "--web.listen-address=127.0.0.1:0", "--storage.tsdb.retention.time=1h",
             "--query.lookback-delta=30s"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=folder)
        try:
            ports = wait_until(lambda: self._ports(), timeout=30, message="prometheus listens")
            self.base = "http://127.0.0.1:%d" % ports[0]
            wait_until(self._ready, timeout=30, interval=0.2, message="prometheus ready")
        except BaseException:   # never left running
            self.stop()
            raise

    def _ports(self):
        assert self.process.poll() is None, "prometheus exited: see its log"
        return listening_ports(self.process.pid)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/-/ready", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def query(self, expression: str) -> dict:
        """{series labels as a tuple of items: value} of an instant query."""
        url = self.base + "/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(url, timeout=5) as reply:
            body = json.loads(reply.read())
        assert body["status"] == "success", body
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in body["data"]["result"]}

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """An origin, a supernode, a daemon mirroring the origin as a registry, and a
    Prometheus scraping the supernode and the daemon."""
    root = tmp_path_factory.mktemp("prometheus")
    origin = Origin(str(root / "origin"))
    supernode = app.start(SupernodeConfig(listen="127.0.0.1:0", source_timeout_s=10.0),
                          str(root / "supernode"))
    daemons = DaemonFactory(str(root / "daemons"))
    daemon = daemons.start(supernode=[supernode.address], registry_mirror=origin.url("").rstrip("/"))
    prometheus = None
    try:
        prometheus = Prometheus(str(root), {"supernode": supernode.address, "daemon": daemon.address})
        yield origin, supernode, daemon, prometheus, root
    finally:
        if prometheus is not None:
            prometheus.stop()
        daemons.stop_all()
        supernode.stop()
        origin.stop()


@pytest.mark.time_limit(120)
def test_prometheus_sees_the_swarm_bytes_reach_the_file_sizes_by_source(cluster):
    origin, supernode, daemon, prometheus, root = cluster
    src = origin.add("swarm.bin", content(12 * MiB, seed=7))
    blob = content(5 * MiB, seed=8)
    _, blob_path, _ = registry_blob(origin, blob)
    clients = [Client([supernode.address], data_dir=str(root / ("peer%d" % i)),
                      upload_listen="127.0.0.1:0") for i in range(3)]
    try:
        outcomes = run_all([lambda c=c, i=i: c.download(src.url, str(root / ("copy%d" % i)),
                                                        digest=src.digest)
                            for i, c in enumerate(clients)], timeout=60)
    finally:
        for client in clients:
            client.close()
    assert [e for _, e in outcomes if e is not None] == []
    assert fetch(daemon.address, "GET", blob_path)[2] == blob
    results = [r for r, _ in outcomes]
    daemon_stats = stats(daemon)

    def scraped(expression: str, want: float):
        return wait_until(lambda: prometheus.query(expression).get((), None) == want, timeout=30,
                          interval=0.5, message="%s == %d (now %s)" % (expression, want,
                                                                        prometheus.query(expression)))

    # The supernode read each file from its source once.
    scraped('sum(dfly_supernode_download_bytes_total{source="source"})', src.size + len(blob))
    # What it uploaded is what every peer (the daemon too) got from it.
    scraped("sum(dfly_supernode_upload_bytes_total)",
            sum(r.bytes_from_supernode for r in results) + daemon_stats["bytes_from_supernode"])
    # The daemon's bytes by source add up to the blob, each as its /v1/stats says.
    scraped('sum(dfly_daemon_download_bytes_total{source=~"source|supernode|peer"})', len(blob))
    for source, key in (("supernode", "bytes_from_supernode"), ("peer", "bytes_from_peers"),
                        ("source", "bytes_from_source")):
        scraped('sum(dfly_daemon_download_bytes_total{source="%s"})' % source, daemon_stats[key])
    scraped('sum(dfly_daemon_mirror_requests_total{outcome="p2p"})', 1)
    scraped("sum(dfly_supernode_tasks_registered_total)", 2)
    scraped("sum(dfly_supernode_tasks_succeeded_total)", 2)
    assert prometheus.query('sum by (instance, job) (up)') == {
        (("instance", supernode.address), ("job", "supernode")): 1.0,
        (("instance", daemon.address), ("job", "daemon")): 1.0}


@pytest.mark.time_limit(60)
def test_promtool_accepts_both_metrics_outputs(cluster):
    origin, supernode, daemon, prometheus, root = cluster
    for running in (supernode, daemon):
        status, headers, body = fetch(running.address, "GET", "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        checked = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                                 timeout=30)
        assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()
        assert checked.stdout + checked.stderr == b"", (checked.stdout + checked.stderr).decode()
