"""Multi-host testbed: N hosts on one switch with real link limits, curl vs dfly.

    sudo python3 bench/testbed.py                      # N = 2,4,8,16, 64 MiB, 100 Mbit/s
    sudo python3 bench/testbed.py --counts 3 --size 4M # the CI smoke size
    sudo python3 bench/testbed.py --counts 16 --scenarios dfly,ideal --repeat 5   # medians
    sudo python3 bench/testbed.py --counts 16 --scenarios ideal,dfly,dfly-daemon --repeat 3
    sudo python3 bench/testbed.py --family ipv6        # IPv6-only hosts (no IPv4 address)
    sudo python3 bench/testbed.py --family dual        # IPv4-only and IPv6-only hosts, one swarm
    sudo python3 bench/testbed.py --counts 8 --trace-dir /tmp/tr   # + bench/timeline.py /tmp/tr/n8-run1
    sudo python3 bench/testbed.py --counts 16 --scenarios dfly --burst 4k   # a strict policer's bucket
    sudo python3 bench/testbed.py --counts 16 --scenarios dfly --shaper tbf --burst 4k --no-offload
    sudo python3 bench/testbed.py --counts 8,16 --scenarios ideal,dfly --fifo   # the older links
    sudo python3 bench/testbed.py --counts 16 --congestion cubic --host-fq   # hosts as most Linux hosts

Strategy: every host is a network namespace with one veth to a bridge that lives
in a namespace of its own, so nothing is added to the machine's own network:
addresses (10.77.0.0/24 by default) exist only inside the namespaces this script
made, and deleting them removes every link with them. Each host's upload is
capped by an HTB qdisc on its own veth, its download by the same on the bridge-
side veth. By default small packets (ACKs, requests, schedule calls) pass bulk
data queued on a link, as on a Linux host, whose default qdisc (fq_codel) serves
a sparse flow's packets first (this kernel has none of fq_codel, fq or sfq);
--fifo queues every packet in one FIFO instead, as runs before 2026-12-07's
fourteenth session did, where each schedule call waited behind up to a full
queue of data at each of up to three links. A host's bulk data shares one FIFO
unless --host-fq gives each flow a queue of its own, served in turn, as fq_codel
would (in one FIFO, TCP small queues can starve a slow flow for seconds); the
hosts run the machine's TCP congestion control unless --congestion names one
(this VM's is bbr, most Linux hosts' cubic). With --family ipv6 every host has
only an IPv6 address (fd77::N/64 by default, no IPv4 on its link); with --family
dual the origin host has both and the client hosts alternate IPv4-only and
IPv6-only (IPv6 switched off in the IPv4 ones), the supernode listens on [::]
and each host downloads by the origin's address of its own family, with the
file's digest as its identity (one task whatever the URL). The origin host runs
nginx and a dfly supernode beside it; client hosts run either curl against nginx
(baseline) or `dfly get` through the supernode with --seed-for (dfly). The
origin host's egress is its veth's tx_bytes, read inside its namespace. An
optional reference scenario (ideal) has every host curl the file from its
neighbour's nginx: every link busy both ways with no scheduling and no Python,
what the fabric itself allows. Another (dfly-daemon) has a `dfly daemon` on
every host, started before the clock as a cluster runs them (and as ideal's
nginx is), and times curl through its proxy: the same swarm without 16
interpreters starting at once on the machine's few cores, which a cluster's
hosts, each with its own CPU, never pay. With --repeat N the dfly and ideal runs
are repeated, alternating, and the table and chart show each count's median run
(the spread is in the JSON); the baseline runs once (N copies through one link:
nothing to average).

Teardown always runs (finally, SIGINT, SIGTERM, SIGHUP): every process inside
our namespaces is killed (they are all ours: the namespaces are new), then the
namespaces are deleted. `--cleanup` removes what a SIGKILLed run left behind.
"""
import argparse
import glob
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (bench scripts run as files, not as a package)

PREFIX = "dflytb-"
SCENARIOS = ("baseline", "dfly", "ideal", "dfly-cut", "dfly-daemon", "dfly-cut-free", "dfly-whole",
             "dfly-daemon-whole")
# dfly-cut: dfly with the supernode's --cut-through (peers still receiving a piece relay its
# verified blocks): the default since 2026-12-07, so the same as dfly now;
# dfly-cut-free: also --free-relay-slots (a relayed fetch holds no --parallel slot);
# dfly-whole, dfly-daemon-whole: --no-cut-through, whole pieces only (the default before),
# to compare with dfly and dfly-daemon in alternating runs of one testbed run.
# dfly-daemon: curl through a daemon on each host (the opening says why).
CUT_THROUGH = ["--cut-through"]
WHOLE = ["--no-cut-through"]
SUPERNODE_FLAGS = {"dfly-cut": CUT_THROUGH, "dfly-cut-free": CUT_THROUGH + ["--free-relay-slots"],
                   "dfly-whole": WHOLE, "dfly-daemon-whole": WHOLE}
DAEMON_SCENARIOS = ("dfly-daemon", "dfly-daemon-whole")
CURL_SCENARIOS = ("baseline", "ideal") + DAEMON_SCENARIOS   # the timed process is curl
NGINX_PORT = 8080
DAEMON_PORT = 65001   # each host's daemon (mirror, proxy, API) on that host's loopback
SUPERNODE_PORT = 8002
FAMILIES = ("ipv4", "ipv6", "dual")
SHAPERS = ("htb", "tbf")
CPU_BOUND = 0.95             # a run with the machine this busy is marked: it measured the CPU
SMALL_BYTES = 1024           # --small-first: packets shorter than this go first
SMALL_CLASS = "1:20"
HOST_FQ_QUANTUM = 64 * 1024  # --host-fq: bytes a flow's class sends in its turn (a GSO packet)
HOST_FQ_BUCKETS = 64         # --host-fq: classes flows are hashed into (u32 hash tables hold 256 at most)
TBF_DEFAULT_BURST = 50_000   # bytes: a roomy bucket, when --shaper tbf is given no --burst

def run(argv: List[str], check: bool = True, timeout_s: float = 20.0) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if check and out.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), out.returncode,
                                                   (out.stderr or out.stdout).strip()[:500]))
    return out


def our_namespaces(prefix: str = PREFIX) -> List[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def namespace_pids(ns: str) -> List[int]:
    out = run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]


def kill_namespace_processes(ns: str, grace_s: float = 5.0) -> int:
    """Stop every process inside `ns` (all started by us: the namespace is ours)."""
    found = namespace_pids(ns)
    for pid in found:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while namespace_pids(ns) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in namespace_pids(ns):
        _signal(pid, signal.SIGKILL)
    return len(found)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def delete_namespaces(names: List[str]) -> None:
    for ns in names:
        kill_namespace_processes(ns)
    for ns in names:
        run(["ip", "netns", "del", ns], check=False)


# --- the network ------------------------------------------------------------------------
class Testbed:
    """A switch namespace with a bridge, an origin host and `hosts` client hosts."""

    def __init__(self, hosts: int, rate_mbit: float, queue_packets: int = 100, subnet: str = "10.77.0",
                 family: str = "ipv4", subnet6: str = "fd77::", burst_bytes: int = 0,
                 shaper: str = "htb", offload: bool = True, small_first: bool = False,
                 byte_fifo: bool = False, congestion: str = "", host_fq: bool = False):
        self.tag = "%s%d-" % (PREFIX, os.getpid())
        self.switch = self.tag + "sw"
        self.origin = self.tag + "o"
        self.clients = [self.tag + "h%d" % i for i in range(1, hosts + 1)]
        self.family = family
        self.addr4: Dict[str, str] = {}   # hosts with IPv4, and their address
        self.addr6: Dict[str, str] = {}   # hosts with IPv6
        for i, ns in enumerate(self.namespaces, start=1):
            v6_only = family == "ipv6" or (family == "dual" and ns != self.origin and i % 2 == 1)
            v4_only = family == "ipv4" or (family == "dual" and ns != self.origin and i % 2 == 0)
            if not v6_only:
                self.addr4[ns] = "%s.%d" % (subnet, i)
            if not v4_only:
                self.addr6[ns] = "%s%x" % (subnet6, i)
        # Each host's own address (IPv4 where it has one), as the scenarios name hosts.
        self.addr = {ns: self.addr4.get(ns) or self.addr6[ns] for ns in self.namespaces}
        self.rate_mbit = rate_mbit
        self.queue_packets = queue_packets
        self.burst_bytes = burst_bytes   # the token bucket's size; 0: tc's default for the rate
        self.shaper = shaper             # htb (a shaping class over a FIFO) or tbf
        self.offload = offload           # False: no GSO/TSO/GRO on the veths (ethtool -K)
        self.small_first = small_first   # small packets before bulk data on every link (htb)
        self.byte_fifo = byte_fifo       # switch ports' FIFOs bounded in bytes (queue x 1514)
        self.congestion = congestion     # every host's TCP congestion control ("": as made)
        self.host_fq = host_fq           # a host's egress: a queue per flow, served in turn
        self.made: List[str] = []

    @property
    def namespaces(self) -> List[str]:
        return [self.origin] + self.clients

    def build(self) -> "Testbed":
        self._ns(self.switch)
        self._ip(self.switch, "link", "add", "br0", "type", "bridge")
        self._ip(self.switch, "link", "set", "br0", "up")
        for i, ns in enumerate(self.namespaces):
            self._ns(ns)
            if self.congestion:
                run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                     "net.ipv4.tcp_congestion_control=" + self.congestion])
            port = "p%d" % i
            run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth",
                 "peer", "name", port, "netns", self.switch])
            self._ip(self.switch, "link", "set", port, "master", "br0")
            self._ip(self.switch, "link", "set", port, "up")
            self._address(ns)
            self._ip(ns, "link", "set", "eth0", "up")
            self._ip(ns, "link", "set", "lo", "up")
            if not self.offload:   # every packet at most one MTU: none bigger than a small bucket
                self._no_offload(ns, "eth0")
                self._no_offload(self.switch, port)
            self._shape(ns, "eth0")                         # the host's upload
            self._shape(self.switch, port, switch_port=True)   # the host's download
        return self

    def _address(self, ns: str) -> None:
        if ns in self.addr4:
            self._ip(ns, "addr", "add", self.addr4[ns] + "/24", "dev", "eth0")
        if ns in self.addr6:   # nodad: usable at once, not after duplicate detection
            self._ip(ns, "-6", "addr", "add", self.addr6[ns] + "/64", "dev", "eth0", "nodad")
        else:   # an IPv4-only host: no IPv6 at all, not even link-local
            run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                 "net.ipv6.conf.default.disable_ipv6=1", "net.ipv6.conf.eth0.disable_ipv6=1"])

    def reach(self, src: str, dst: str) -> str:
        """The address host `src` reaches host `dst` at: IPv4 when both have it, else IPv6."""
        if src in self.addr4 and dst in self.addr4:
            return self.addr4[dst]
        if src in self.addr6 and dst in self.addr6:
            return "[%s]" % self.addr6[dst]
        raise RuntimeError("%s cannot reach %s: no address family in common" % (src, dst))

    def _ns(self, name: str) -> None:
        run(["ip", "netns", "add", name])
        self.made.append(name)

    def _ip(self, ns: str, *args: str) -> None:
        run(["ip", "-n", ns] + list(args))

    def _no_offload(self, ns: str, dev: str) -> None:
        run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "gso", "off", "tso", "off", "gro", "off"])

    def _shape(self, ns: str, dev: str, switch_port: bool = False) -> None:
        # One tc for them all (--host-fq makes some 200 a link): `tc -batch` from a file.
        with tempfile.NamedTemporaryFile("w", suffix=".tc") as batch:
            batch.write("".join(" ".join(command) + "\n" for command in self.shaping(dev, switch_port)))
            batch.flush()
            run(["ip", "netns", "exec", ns, "tc", "-batch", batch.name])

    def shaping(self, dev: str, switch_port: bool) -> List[List[str]]:
        """The tc commands of one link direction: a host's own egress (its qdisc
        pushes back on its sockets, so its FIFO counts packets), or a switch port
        (bounded in bytes with --byte-fifo, as a switch's buffer is). Pure."""
        return shaping_commands(dev, self.rate_mbit, self.shaper, self.burst_bytes, self.queue_packets,
                                self.small_first, self.byte_fifo and switch_port,
                                self.host_fq and not switch_port)

    def small_first_packets(self, ns: str, dev: str = "eth0") -> int:
        """Packets the small-first class of `ns`'s link sent (0 without --small-first)."""
        out = run(["ip", "netns", "exec", ns, "tc", "-s", "class", "show", "dev", dev]).stdout
        return class_packets(out, SMALL_CLASS)

    def congestion_control(self) -> str:
        """The TCP congestion control the hosts run (a new namespace takes the
        machine's: bbr on some, cubic on most Linux hosts)."""
        out = run(["ip", "netns", "exec", self.origin, "cat", "/proc/sys/net/ipv4/tcp_congestion_control"])
        return out.stdout.strip()

    def tx_bytes(self, ns: str) -> int:
        out = run(["ip", "netns", "exec", ns, "cat", "/sys/class/net/eth0/statistics/tx_bytes"])
        return int(out.stdout.strip())

    def exec_argv(self, ns: str, argv: List[str]) -> List[str]:
        return ["ip", "netns", "exec", ns] + argv

    def kill_clients(self) -> int:
        return sum(kill_namespace_processes(ns) for ns in self.clients)

    def clients_cpu_s(self) -> float:
        """CPU seconds used so far by the processes still alive on the client hosts."""
        return sum(harness.process_cpu_s(pid) or 0.0 for ns in self.clients
                   for pid in namespace_pids(ns))

    def close(self) -> None:
        made, self.made = list(self.made), []
        delete_namespaces([ns for ns in reversed(made) if ns != self.switch]
                          + ([self.switch] if self.switch in made else []))


# --- the origin host: nginx + supernode ----------------------------------------------------
def start_nginx(ws: harness.Workspace, bed: Testbed, ns: str, www: str) -> subprocess.Popen:
    """nginx serving `www` on port NGINX_PORT of host `ns`, answering."""
    ip = bed.reach(ns, ns)
    root = ws.dir("nginx-" + ns[len(bed.tag):])
    os.makedirs(os.path.join(root, "tmp"), exist_ok=True)
    listens = ["listen %s:%d;" % (a, NGINX_PORT) for a in
               ([bed.addr4[ns]] if ns in bed.addr4 else []) +
               (["[%s]" % bed.addr6[ns]] if ns in bed.addr6 else [])]
    conf = harness.NGINX_CONF.format(root=root, port=NGINX_PORT, www=www).replace(
        "listen 127.0.0.1:%d;" % NGINX_PORT, " ".join(listens))
    conf_path = os.path.join(root, "nginx.conf")
    with open(conf_path, "w") as f:
        f.write(conf)
    proc = ws.popen(bed.exec_argv(ns, [harness.NGINX, "-c", conf_path, "-p", root, "-g", "daemon off;"]),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError("nginx exited with %s; see %s/error.log" % (proc.returncode, root))
        out = run(bed.exec_argv(ns, ["curl", "-g", "-s", "-o", "/dev/null", "-m", "2",
                                     "http://%s:%d/" % (ip, NGINX_PORT)]), check=False)
        return out.returncode == 0
    harness.wait_until(answers, 10, "nginx in " + ns)
    return proc


class OriginHost:
    def __init__(self, ws: harness.Workspace, bed: Testbed, www: str, sn_extra: List[str],
                 python: str = sys.executable):
        self.ws, self.bed = ws, bed
        self.python = python
        self.nginx = start_nginx(ws, bed, bed.origin, www)
        self.nginx_root = ws.dir("nginx-o")
        self.sn_extra = sn_extra
        self.supernode: Optional[subprocess.Popen] = None
        self.runs = 0

    def url(self, name: str, ns: str) -> str:
        """The file's URL as host `ns` reaches the origin."""
        return "http://%s:%d/%s" % (self.bed.reach(ns, self.bed.origin), NGINX_PORT, name)

    def supernode_address(self, ns: str) -> str:
        return "%s:%d" % (self.bed.reach(ns, self.bed.origin), SUPERNODE_PORT)

    @property
    def listen_address(self) -> str:
        if self.bed.family == "dual":   # every address, both families
            return "[::]:%d" % SUPERNODE_PORT
        return self.supernode_address(self.bed.origin)

    def start_supernode(self, extra: Optional[List[str]] = None) -> None:
        """A fresh supernode (empty cache), so every dfly run is a cold one."""
        self.stop_supernode()
        self.runs += 1
        data = self.ws.dir("supernode-%d" % self.runs)
        log_path = os.path.join(data, "stderr.log")
        with open(log_path, "wb") as err:
            self.supernode = self.ws.popen(self.bed.exec_argv(self.bed.origin, [self.python, "-S"] + [
                self.ws.pyz, "supernode", "--listen", self.listen_address,
                "--data-dir", data] + self.sn_extra + (extra or [])), stdout=subprocess.DEVNULL,
                stderr=err)
        wait_listening([(self.supernode, log_path)], 20, "the supernode's listening line")

    def supernode_cpu_s(self) -> Optional[float]:
        return harness.process_cpu_s(self.supernode.pid) if self.supernode is not None else None

    def stop_supernode(self) -> None:
        if self.supernode is not None:
            self.ws.stop(self.supernode)
            self.supernode = None


def timed_get(scenario: str) -> bool:
    """Is what each host times a `dfly get` (not curl)?"""
    return scenario.startswith("dfly") and scenario not in CURL_SCENARIOS


def wait_listening(started: List[Tuple[subprocess.Popen, str]], timeout_s: float, what: str) -> None:
    """Until each (process, its stderr log) has logged "listening on"; RuntimeError with
    the end of its log when one exits first."""
    def listening() -> bool:
        for proc, log_path in started:
            with open(log_path, "rb") as f:
                said = f.read()
            if proc.poll() is not None:
                raise RuntimeError("%s exited %s: %s" % (os.path.basename(os.path.dirname(log_path)),
                                   proc.returncode, said[-500:].decode("utf-8", "replace").strip()))
            if b"listening on" not in said:
                return False
        return True
    harness.wait_until(listening, timeout_s, what)


# --- scenarios ---------------------------------------------------------------------------
def start_daemons(ws: harness.Workspace, bed: Testbed, origin: OriginHost,
                  hosts: List[str]) -> List[subprocess.Popen]:
    """A `dfly daemon` on each host whose proxy fetches file.bin through P2P, answering."""
    procs, logs = [], []
    for ns in hosts:
        data = ws.dir("run", ns, "daemon")
        logs.append(os.path.join(data, "stderr.log"))
        with open(logs[-1], "wb") as err:
            procs.append(ws.popen(bed.exec_argv(ns, [
                origin.python, "-S", ws.pyz, "daemon", "--supernode", origin.supernode_address(ns),
                "--listen", "127.0.0.1:%d" % DAEMON_PORT, "--data-dir", data,
                "--proxy-rule", r"p2p /file\.bin$"]), stdout=subprocess.DEVNULL, stderr=err))
    wait_listening(list(zip(procs, logs)), 30, "%d daemons' listening lines" % len(procs))
    return procs


def run_scenario(ws: harness.Workspace, bed: Testbed, origin: OriginHost, scenario: str, n: int,
                 size: int, digest: str, timeout_s: float, seed_for: str, get_extra: List[str],
                 www: str = "", trace_dir: str = "") -> dict:
    hosts = bed.clients[:n]
    outs = {}
    procs = []
    dfly = scenario.startswith("dfly")
    via_get = timed_get(scenario)
    if dfly:
        origin.start_supernode(SUPERNODE_FLAGS.get(scenario))
    if scenario == "ideal":   # every host already holds the file and serves it with nginx
        for ns in hosts:
            start_nginx(ws, bed, ns, www)
    daemons = start_daemons(ws, bed, origin, hosts) if scenario in DAEMON_SCENARIOS else []
    daemons_cpu0 = sum(harness.process_cpu_s(p.pid) or 0.0 for p in daemons)
    tx0 = bed.tx_bytes(bed.origin)
    mark = os.path.getsize(os.path.join(origin.nginx_root, "access.log")) \
        if os.path.exists(os.path.join(origin.nginx_root, "access.log")) else 0
    cpu = harness.CpuMeter()
    for ns in hosts:
        home = ws.dir("run", ns)
        outs[ns] = os.path.join(home, "file.bin")
        if scenario == "baseline":
            argv = [harness.CURL, "-g", "-sS", "--fail", "-o", outs[ns], origin.url("file.bin", ns)]
        elif scenario == "ideal":   # from the next host: every link busy both ways, no software
            neighbour = hosts[(hosts.index(ns) + 1) % n] if n > 1 else bed.origin
            argv = [harness.CURL, "-g", "-sS", "--fail", "-o", outs[ns],
                    "http://%s:%d/file.bin" % (bed.reach(ns, neighbour), NGINX_PORT)]
        elif scenario in DAEMON_SCENARIOS:
            argv = [harness.CURL, "-g", "-sS", "--fail", "-o", outs[ns], "--proxy",
                    "http://127.0.0.1:%d" % DAEMON_PORT, origin.url("file.bin", ns)]
        else:
            argv = [origin.python, "-S", ws.pyz, "get", origin.url("file.bin", ns), "-o", outs[ns],
                    "--supernode", origin.supernode_address(ns),
                    "--data-dir", os.path.join(home, "data"),
                    "--seed-for", seed_for, "--digest", "sha256:" + digest, "--no-daemon",
                    "--json", "--timeout", "%ds" % timeout_s] + get_extra
            if bed.family == "dual":   # one task, though each family has its own URL
                argv += ["--identifier", "sha256:" + digest]
            if trace_dir:   # bench/timeline.py draws them
                argv += ["--trace", os.path.join(trace_dir, ns[len(bed.tag):] + ".json")]   # h1.json
        procs.append(harness.Timed(ws, bed.exec_argv(ns, argv), "%s-n%d-%s" % (scenario, n, ns),
                                   gnu_time=True))
    started = min(t.started for t in procs)
    copied: Dict[str, float] = {}

    def progress() -> bool:
        """Note when each verified copy is in place: dfly renames it there once every piece
        and the whole-file digest checked; curl's file is complete when curl exits."""
        now = time.perf_counter()
        exited = [t.poll() for t in procs]   # once: a process exiting mid-loop is seen next time
        for ns, gone in zip(hosts, exited):
            if ns not in copied and ((via_get and os.path.exists(outs[ns])) or gone):
                copied[ns] = now
        return all(exited)
    try:
        harness.wait_until(progress, timeout_s, "%d %s downloads" % (n, scenario), step_s=0.005)
        tx1 = bed.tx_bytes(bed.origin)
        results = [t.finish(10) for t in procs]
        leftover_cpu_s, supernode_cpu_s = bed.clients_cpu_s(), origin.supernode_cpu_s()
        daemons_cpu_s = sum(harness.process_cpu_s(p.pid) or 0.0 for p in daemons) - daemons_cpu0
    finally:
        for proc in daemons:
            ws.stop(proc)
        for t in procs:
            if t.proc.poll() is None:
                ws.stop(t.proc)
        seeders = bed.kill_clients()   # detached seeders, and anything a failure left
        origin.stop_supernode()
    cpu_use = cpu.stop()
    nginx = _nginx_bytes(origin, mark)
    host_times = [copied[ns] - t.started for ns, t in zip(hosts, procs)]
    exit_times = [t.ended - t.started for t in procs]
    for ns in hosts:   # every copy must be the file, whatever the scenario claims
        got = harness.sha256_file(outs[ns])
        if got != digest:
            raise RuntimeError("%s: %s has the wrong content" % (scenario, ns))
        os.remove(outs[ns])
    if ws.keep:   # the hosts' logs (not their copies of the file) outlive the run
        for ns in hosts:
            for found in glob.glob(os.path.join(ws.dir("run", ns), "*", "logs")):
                shutil.copytree(found, ws.path("logs", "%s-n%d-%s-logs" % (scenario, n, ns)),
                                dirs_exist_ok=True)
    shutil.rmtree(ws.dir("run"), ignore_errors=True)
    out = {"scenario": scenario, "hosts": n, "last_s": round(max(copied.values()) - started, 3),
           "median_host_s": round(statistics.median(host_times), 3),
           "host_s": [round(x, 3) for x in sorted(host_times)],
           "last_exit_s": round(max(t.ended for t in procs) - started, 3),
           "exit_s": [round(x, 3) for x in sorted(exit_times)],
           "origin_egress_bytes": tx1 - tx0, "origin_egress_x": round((tx1 - tx0) / size, 4),
           "nginx_body_bytes": nginx, "cpu": cpu_use, "seeders_stopped": seeders,
           "host_cpu_s": round(sum(r.get("cpu_s", 0.0) for r in results) + daemons_cpu_s, 2),
           "leftover_cpu_s": round(leftover_cpu_s, 2)}
    if dfly:
        out["supernode_cpu_s"] = round(supernode_cpu_s or 0.0, 2)
    if via_get:
        js = [r.get("json", {}) for r in results]
        out["bytes_from_supernode"] = sum(j.get("bytes_from_supernode", 0) for j in js)
        out["bytes_from_peers"] = sum(j.get("bytes_from_peers", 0) for j in js)
        out["bytes_from_source"] = sum(j.get("bytes_from_source", 0) for j in js)
        out["peer_share"] = round(out["bytes_from_peers"] / max(1, n * size), 4)
        out["dfly_elapsed_s"] = [round(j.get("elapsed_s", 0), 3) for j in js]
        # Before a get's own clock starts: the interpreter starting and importing (on
        # this machine all hosts do it at once on its few cores), and registering.
        out["startup_s"] = round(statistics.median(
            h - j["elapsed_s"] for h, j in zip(host_times, js) if "elapsed_s" in j), 3) \
            if any("elapsed_s" in j for j in js) else None
    return out


def _nginx_bytes(origin: OriginHost, mark: int) -> int:
    total = 0
    try:
        with open(os.path.join(origin.nginx_root, "access.log"), "rb") as f:
            f.seek(mark)
            for line in f.read().decode("latin-1").splitlines():
                first = line.split(" ", 1)[0]
                total += int(first) if first.isdigit() else 0
    except OSError:
        pass
    return total


# --- the chart ---------------------------------------------------------------------------
def svg_chart(rows: List[dict], lower_bound_s: float, title: str) -> str:
    """Time to the last verified copy against hosts, one line per scenario (hand-written SVG)."""
    counts = sorted({r["hosts"] for r in rows})
    series = [("baseline", "curl from one nginx", "#d62728", "last_s"),
              ("dfly", "dfly get (last host)", "#1f77b4", "last_s"),
              ("dfly", "dfly get (median host)", "#6baed6", "median_host_s"),
              ("ideal", "ideal swarm (reference)", "#9467bd", "last_s")]
    top = max([r[k] for r in rows for s, _, _, k in series if r["scenario"] == s] + [lower_bound_s])
    top = _nice(top * 1.1)
    w, h, left, right, up, down = 640, 400, 60, 180, 40, 50
    pw, ph = w - left - right, h - up - down

    def x(n):
        if len(counts) == 1:
            return left + pw / 2
        return left + pw * counts.index(n) / (len(counts) - 1)

    def y(t):
        return up + ph * (1 - t / top)

    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
             'font-family="sans-serif" font-size="12">' % (w, h, w, h),
             '<rect width="100%" height="100%" fill="white"/>',
             '<text x="%d" y="20" font-size="14">%s</text>' % (left, _esc(title))]
    for i in range(6):
        t = top * i / 5
        parts.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>'
                     % (left, left + pw, y(t), y(t)))
        parts.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>'
                     % (left - 6, y(t) + 4, round(t, 1)))
    for n in counts:
        parts.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>' % (x(n), up + ph + 18, n))
    parts.append('<text x="%d" y="%d" text-anchor="middle">hosts</text>' % (left + pw / 2, h - 8))
    parts.append('<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">'
                 'seconds</text>' % (up + ph / 2, up + ph / 2))
    parts.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#2ca02c" stroke-dasharray="6 4"/>'
                 % (left, left + pw, y(lower_bound_s), y(lower_bound_s)))
    legend = [("#2ca02c", "lower bound (size / link)", True)]
    for scenario, label, color, key in series:
        pts = [(x(r["hosts"]), y(r[key])) for r in sorted(rows, key=lambda r: r["hosts"])
               if r["scenario"] == scenario]
        if not pts:
            continue
        parts.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                     % (color, " ".join("%.1f,%.1f" % p for p in pts)))
        parts.extend('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (px, py, color) for px, py in pts)
        legend.append((color, label, False))
    for i, (color, label, dashed) in enumerate(legend):
        ly = up + 10 + 20 * i
        parts.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>'
                     % (left + pw + 12, left + pw + 32, ly, ly, color,
                        ' stroke-dasharray="6 4"' if dashed else ""))
        parts.append('<text x="%d" y="%d">%s</text>' % (left + pw + 38, ly + 4, _esc(label)))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _nice(v: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `v`."""
    scale = 10 ** math.floor(math.log10(max(v, 1e-9)))
    return next(m * scale for m in (1, 2, 5, 10) if m * scale >= v)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- main --------------------------------------------------------------------------------
def preflight() -> Optional[str]:
    """Why the testbed cannot run here, or None."""
    if os.geteuid() != 0:
        return "the testbed needs root (network namespaces and tc); run it with sudo"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return "%s is missing (Debian: apt-get install iproute2)" % tool
    if not os.access(harness.NGINX, os.X_OK):
        return "nginx is missing (Debian: apt-get install nginx-light)"
    if shutil.which(harness.CURL) is None:
        return "curl is missing (Debian: apt-get install curl)"
    probe = "%sprobe-%d" % (PREFIX, os.getpid())
    out = run(["ip", "netns", "add", probe], check=False)
    run(["ip", "netns", "del", probe], check=False)
    if out.returncode != 0:
        return "cannot create network namespaces: %s" % out.stderr.strip()
    return None


def shaping_commands(dev: str, rate_mbit: float, shaper: str, burst_bytes: int, queue_packets: int,
                     small_first: bool = False, byte_fifo: bool = False,
                     per_flow: bool = False) -> List[List[str]]:
    """The `tc` commands (without `tc`) that shape one link direction on `dev`. Pure.

    htb: a shaping class over a FIFO leaf (fq_codel and netem are often not built into
    CI kernels; this machine's kernel has neither fq_codel nor fq nor sfq), as deep as
    a switch port's buffer rather than a host's 1000-packet txqueue. With small_first,
    two classes share the rate: packets under SMALL_BYTES (TCP ACKs, requests, schedule
    calls) go in one that is served first, bulk data in the other, as a Linux host's
    default fq_codel lets a sparse flow's packets pass a bulk flow's queue (and as a
    switch's priority queue would). A FIFO counts packets, and with the offloads on
    (GSO) a packet of bulk data is up to 64 KB: 100 of them hold up to ~6 MB, half a
    second at 100 Mbit/s, and a reply of more than one small packet (a schedule
    call's orders) waits ~0.1 s behind the bulk (bench/traces.py's "schedule calls").
    With byte_fifo the FIFO holds queue_packets x 1514 bytes, as a switch port would.

    per_flow (a host's own egress, --host-fq): bulk data is hashed by flow into
    HOST_FQ_BUCKETS classes, each with a FIFO of its own, served in turn (HTB's
    round robin among siblings, a quantum of 64 KB each), as a Linux host's fq or
    fq_codel serves its flows. One FIFO instead starves some flows for seconds:
    TCP small queues lets a socket hold only ~2 packets in the qdisc, a flow
    sending slowly makes small packets (its pacing rate sizes them), and each of
    its turns then waits for the whole FIFO to drain (twentieth session)."""
    rate = "%gmbit" % rate_mbit
    if shaper == "tbf":   # one token bucket; its queue in bytes, as deep as the FIFO's
        return [["qdisc", "add", "dev", dev, "root", "handle", "1:", "tbf", "rate", rate,
                 "burst", str(burst_bytes or TBF_DEFAULT_BURST), "limit", str(queue_packets * 1514)]]
    bucket = ["burst", str(burst_bytes), "cburst", str(burst_bytes)] if burst_bytes else []
    fifo = ["pfifo", "limit", str(queue_packets)]
    if byte_fifo:
        fifo = ["bfifo", "limit", str(queue_packets * 1514)]
    commands = [["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10"]]
    if per_flow:
        return commands + _per_flow(dev, rate_mbit, bucket, fifo, small_first)
    if not small_first:
        return commands + [
            ["class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb",
             "rate", rate, "ceil", rate] + bucket,
            ["qdisc", "add", "dev", dev, "parent", "1:10", "handle", "10:"] + fifo]
    half = "%gmbit" % (rate_mbit / 2)   # each class's guarantee; either may take the whole rate
    return commands + [
        ["class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", rate,
         "ceil", rate] + bucket,
        ["class", "add", "dev", dev, "parent", "1:1", "classid", "1:10", "htb", "rate", half,
         "ceil", rate, "prio", "1"] + bucket,
        ["class", "add", "dev", dev, "parent", "1:1", "classid", SMALL_CLASS, "htb", "rate", half,
         "ceil", rate, "prio", "0"] + bucket,
        ["qdisc", "add", "dev", dev, "parent", "1:10", "handle", "10:"] + fifo,
        ["qdisc", "add", "dev", dev, "parent", SMALL_CLASS, "handle", "20:"] + fifo] + _small_filters(dev)


def _small_filters(dev: str) -> List[List[str]]:
    """Packets under SMALL_BYTES into SMALL_CLASS: the top bits of IPv4's total length
    (bytes 2-3) or IPv6's payload length (bytes 4-5) are zero."""
    mask = "0x%04x" % (0xFFFF & ~(SMALL_BYTES - 1))
    return [["filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
             "match", "u16", "0x0000", mask, "at", "2", "flowid", SMALL_CLASS],
            ["filter", "add", "dev", dev, "parent", "1:", "protocol", "ipv6", "prio", "2", "u32",
             "match", "u16", "0x0000", mask, "at", "4", "flowid", SMALL_CLASS]]


def _per_flow(dev: str, rate_mbit: float, bucket: List[str], fifo: List[str],
              small_first: bool) -> List[List[str]]:
    """shaping_commands' classes for per_flow: under one class at the link's rate,
    the default class (1:10), SMALL_CLASS with small_first, and HOST_FQ_BUCKETS
    classes (1:100 onwards), each guaranteed an equal share and allowed the whole
    rate, served in turn. This kernel has no flow classifier (nor sfq), so u32
    hashes a TCP packet on bits 1-6 of its destination port: every bulk sender here
    (nginx, the supernode, a peer's uploader) is the server side, so that is the
    receiver's ephemeral port, one per connection."""
    rate = "%gmbit" % rate_mbit
    flows = ["1:%x" % (0x100 + i) for i in range(HOST_FQ_BUCKETS)]
    ids = ["1:10"] + ([SMALL_CLASS] if small_first else []) + flows
    share = "%gkbit" % max(8.0, rate_mbit * 1000 / len(ids))
    out = [["class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", rate,
            "ceil", rate] + bucket]
    for classid in ids:
        out.append(["class", "add", "dev", dev, "parent", "1:1", "classid", classid, "htb", "rate", share,
                    "ceil", rate, "prio", "0" if classid == SMALL_CLASS else "1",
                    "quantum", str(HOST_FQ_QUANTUM)] + bucket)
        out.append(["qdisc", "add", "dev", dev, "parent", classid, "handle",
                    "%s:" % classid.split(":")[1]] + fifo)
    out += _small_filters(dev) if small_first else []
    # Bits 1 and up: Linux gives connect() even ports, so the lowest bit is always 0.
    mask = "0x%08x" % ((HOST_FQ_BUCKETS - 1) << 1)
    # (protocol, filter priority, hash table, where the TCP ports are: past a 20-byte
    # IPv4 header, a 40-byte IPv6 one)
    for protocol, prio, table, ports in (("ip", "5", "2", "20"), ("ipv6", "6", "3", "40")):
        head = ["filter", "add", "dev", dev, "parent", "1:", "protocol", protocol, "prio", prio]
        out.append(head + ["handle", table + ":", "u32", "divisor", str(HOST_FQ_BUCKETS)])
        out.append(head + ["u32", "ht", "800::", "match", "ip" if protocol == "ip" else "ip6", "protocol",
                           "6", "0xff", "hashkey", "mask", mask, "at", ports, "link", table + ":"])
        for i, classid in enumerate(flows):
            out.append(head + ["u32", "ht", "%s:%x:" % (table, i), "match", "u32", "0", "0",
                               "flowid", classid])
    return out


ALLOWED_CONGESTION = "/proc/sys/net/ipv4/tcp_allowed_congestion_control"


def available_congestion() -> List[str]:
    """The TCP congestion controls this kernel has loaded."""
    try:
        with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as f:
            return f.read().split()
    except OSError:
        return []


def allow_congestion(name: str) -> Optional[str]:
    """A network namespace may make only an allowed algorithm its default (the kernel
    refuses others with EPERM): allow `name` for the run. Returns the list before,
    for main() to put back, or None when nothing was changed."""
    if not name:
        return None
    with open(ALLOWED_CONGESTION) as f:
        before = f.read().strip()
    if name in before.split():
        return None
    _set_sysctl(ALLOWED_CONGESTION, before + " " + name)
    return before


def _set_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value + "\n")


def class_packets(tc_stats: str, classid: str) -> int:
    """The packets `tc -s class show` says class `classid` sent (0 when it has none). Pure."""
    lines = tc_stats.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("class ") and line.split()[2:3] == [classid]:
            for stats in lines[i + 1:i + 3]:
                words = stats.split()
                if words[:1] == ["Sent"] and "pkt" in words:
                    return int(words[words.index("pkt") - 1])
    return 0


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="bench/testbed.py", description=__doc__.splitlines()[0])
    p.add_argument("--counts", default="2,4,8,16", help="host counts to run (default: %(default)s)")
    p.add_argument("--size", type=harness.parse_size, default=64 << 20, help="file size (default: 64M)")
    p.add_argument("--rate", type=float, default=100.0, help="link rate per host, Mbit/s, both "
                   "directions (default: %(default)s)")
    p.add_argument("--queue", type=int, default=100, help="packets each link's FIFO holds "
                   "(default: %(default)s, 12 ms at 100 Mbit/s)")
    p.add_argument("--burst", type=harness.parse_size, default=0, help="each link's token bucket, "
                   "bytes (e.g. 4k: a strict policer's; 50k: a roomy one) (default: tc's own for "
                   "the rate with htb, %d with tbf)" % TBF_DEFAULT_BURST)
    p.add_argument("--shaper", default="htb", choices=SHAPERS, help="htb: a shaping class over "
                   "the FIFO; tbf: a plain token bucket filter (default: %(default)s)")
    p.add_argument("--small-first", dest="small_first", action="store_true", default=None,
                   help="on every link, packets under %d bytes (TCP ACKs, requests, schedule "
                   "calls) pass bulk data queued before them, as a host's fq_codel (Linux's "
                   "default qdisc; not in this kernel) or a switch's priority queue lets them "
                   "(the default with --shaper htb)" % SMALL_BYTES)
    p.add_argument("--fifo", dest="small_first", action="store_false", help="one FIFO per link "
                   "instead, where every packet waits behind up to --queue packets (the default "
                   "before 2026-12-07's fourteenth session, and with --shaper tbf)")
    p.add_argument("--byte-fifo", action="store_true", help="bound each switch port's FIFO "
                   "(a host's download) in bytes, --queue x 1514, not in packets: with the "
                   "offloads on a packet of bulk data is up to 64 KB, so 100 packets are up to "
                   "~6 MB, and a switch port's buffer is bounded in bytes. A host's own egress "
                   "queue keeps --queue packets: a host's qdisc pushes back on its sockets "
                   "(TCP small queues) rather than dropping what they send")
    p.add_argument("--host-fq", action="store_true", help="on each host's own egress, a queue "
                   "per flow (64, hashed on the receiver's port), served in turn, as a Linux "
                   "host's fq or fq_codel serves its flows (this kernel has neither); without it "
                   "one FIFO, where TCP small queues can starve a slow flow for seconds (needs "
                   "--shaper htb)")
    p.add_argument("--no-offload", dest="offload", action="store_false", help="turn GSO, TSO "
                   "and GRO off on every veth (ethtool -K), so no packet is larger than the MTU")
    p.add_argument("--congestion", default="", metavar="NAME", help="every host's TCP congestion "
                   "control (net.ipv4.tcp_congestion_control: cubic, bbr, reno; one of "
                   "/proc/sys/net/ipv4/tcp_available_congestion_control) (default: what a new "
                   "network namespace gets here, the machine's own)")
    p.add_argument("--scenarios", default="baseline,dfly", help="baseline, dfly and/or ideal (a "
                   "reference: each host curls the file from its neighbour's nginx, as a swarm "
                   "with no software overhead would), dfly-cut (dfly with --cut-through, the "
                   "default now), dfly-cut-free (also --free-relay-slots), "
                   "dfly-daemon (curl through a dfly daemon each host started before the "
                   "clock, as nginx is for ideal), dfly-whole and dfly-daemon-whole (with "
                   "--no-cut-through: whole pieces only) (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=1, help="runs of dfly and ideal per count, "
                   "alternating; the table shows the median run (default: %(default)s)")
    p.add_argument("--family", default="ipv4", choices=FAMILIES, help="the hosts' addresses: "
                   "ipv4, ipv6 (IPv6 only, no IPv4 address) or dual (the origin both, the clients "
                   "alternately IPv4-only and IPv6-only; the supernode on [::]) (default: %(default)s)")
    p.add_argument("--seed-for", default="30s", help="dfly get --seed-for (default: %(default)s)")
    p.add_argument("--get-arg", action="append", default=[], help="extra `dfly get` flag (repeatable)")
    p.add_argument("--supernode-arg", action="append", default=[], help="extra supernode flag")
    p.add_argument("--timeout", type=float, default=0, help="per-run timeout, s (default: 3x the "
                   "baseline's expected time + 60)")
    p.add_argument("--pyz", help="use this dfly.pyz instead of building one")
    # -S: a bare host's interpreter has no site-packages, whose .pth files on a developer
    # machine may import third-party code at every start.
    p.add_argument("--python", default=sys.executable, help="the interpreter every host runs dfly "
                   "with, as `PYTHON -S` (default: this one, %(default)s)")
    p.add_argument("--tmp", help="parent of the workspace (default: /dev/shm, so disks do not count)")
    p.add_argument("--out", default=os.path.join(harness.HERE, "results", "testbed.json"))
    p.add_argument("--svg", default=os.path.join(harness.HERE, "results", "testbed.svg"))
    p.add_argument("--keep", action="store_true", help="keep the workspace")
    p.add_argument("--trace-dir", help="keep each dfly host's `get --trace` in DIR/n<hosts>-run<run>/ "
                   "(draw one with bench/timeline.py, read its figures with bench/traces.py)")
    p.add_argument("--cleanup", action="store_true", help="only remove namespaces (and their "
                   "processes) a killed run left behind, then exit")
    args = p.parse_args(argv)
    reason = preflight()
    if reason:
        sys.stderr.write("testbed: %s\n" % reason)
        return 2
    if args.cleanup:
        stale = our_namespaces()
        delete_namespaces(stale)
        print("removed %d namespaces: %s" % (len(stale), " ".join(stale) or "none"))
        return 0
    mine = "%s%d-" % (PREFIX, os.getpid())
    stale = [ns for ns in our_namespaces() if not ns.startswith(mine)]
    if stale:
        sys.stderr.write("testbed: note: namespaces from another run exist (%s); if no run is "
                         "going, remove them with --cleanup\n" % " ".join(stale[:4]))
    counts = sorted({int(c) for c in args.counts.split(",") if c.strip()})
    scenarios = [s for s in args.scenarios.split(",") if s]
    if not counts or counts[0] < 1 or any(s not in SCENARIOS for s in scenarios):
        p.error("--counts must be positive integers, --scenarios some of " + ",".join(SCENARIOS))
    lower_bound = args.size * 8 / (args.rate * 1e6)
    timeout_s = args.timeout or lower_bound * max(counts) * 3 + 60
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)
    if args.queue < 2:
        p.error("--queue must be at least 2 packets")
    if args.congestion and args.congestion not in available_congestion():
        p.error("--congestion must be one of this kernel's: " + " ".join(available_congestion()))
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.family == "dual" and "ideal" in scenarios:
        p.error("--scenarios ideal needs hosts of one family (--family ipv4 or ipv6)")
    if args.small_first and args.shaper != "htb":
        p.error("--small-first needs --shaper htb")
    if args.host_fq and args.shaper != "htb":
        p.error("--host-fq needs --shaper htb")
    if args.byte_fifo and args.shaper != "htb":
        p.error("--byte-fifo needs --shaper htb (tbf's queue is in bytes already)")
    if args.small_first is None:
        args.small_first = args.shaper == "htb"
    if not args.offload and shutil.which("ethtool") is None:
        p.error("--no-offload needs ethtool (Debian: apt-get install ethtool)")
    bed = Testbed(max(counts), args.rate, args.queue, family=args.family, burst_bytes=args.burst,
                  shaper=args.shaper, offload=args.offload, small_first=args.small_first,
                  byte_fifo=args.byte_fifo, congestion=args.congestion, host_fq=args.host_fq)
    ws = None
    rows: List[dict] = []
    allowed_before = None
    tcp = ""
    try:
        allowed_before = allow_congestion(args.congestion)
        parent = args.tmp or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
        ws = harness.Workspace(parent, args.keep, args.pyz)
        www = ws.dir("www")
        harness.write_file(os.path.join(www, "file.bin"), args.size)
        digest = harness.sha256_file(os.path.join(www, "file.bin"))
        bed.build()
        tcp = bed.congestion_control()
        print("links: %g Mbit/s, %s, bucket %s, queue %d packets%s, offloads %s, TCP %s; load average %.2f"
              % (args.rate, args.shaper, "%d bytes" % args.burst if args.burst else "tc's default",
                 args.queue, (" (switch ports: of 1514 bytes)" if args.byte_fifo else "")
                 + (" (small packets first)" if args.small_first else "")
                 + (" (hosts: a queue per flow)" if args.host_fq else ""),
                 "on" if args.offload else "off", tcp, harness.LOADAVG_AT_START),
              flush=True)
        origin = OriginHost(ws, bed, www, args.supernode_arg, args.python)
        for n in counts:
            for run in range(1, args.repeat + 1):
                for scenario in scenarios:
                    if scenario == "baseline" and run > 1:
                        continue
                    traces = ""
                    if args.trace_dir and timed_get(scenario):   # get --trace
                        traces = os.path.join(os.path.abspath(args.trace_dir), "%sn%d-run%d" % (
                            scenario[len("dfly-"):] + "-" if scenario != "dfly" else "", n, run))
                        os.makedirs(traces, exist_ok=True)
                    row = run_scenario(ws, bed, origin, scenario, n, args.size, digest, timeout_s,
                                       args.seed_for, args.get_arg, www, trace_dir=traces)
                    row["run"] = run
                    row["vs_lower_bound"] = round(row["last_s"] / lower_bound, 3)
                    rows.append(row)
                    print(_line(row) + ("  [run %d]" % run if args.repeat > 1 else ""), flush=True)
        # What went through the origin's small-first class: that the filters match at all.
        small_packets = bed.small_first_packets(bed.origin) if args.small_first else 0
    finally:
        bed.close()
        if ws is not None:
            ws.close()
        if allowed_before is not None:
            _set_sysctl(ALLOWED_CONGESTION, allowed_before)
    left = our_namespaces(bed.tag)
    table = median_rows(rows)
    if args.repeat > 1:
        print("medians of %d runs:" % args.repeat)
        for row in table:
            print(_line(row) + "  (runs: %s s)" % ", ".join("%.2f" % t for t in row["runs_last_s"]))
    result = {"benchmark": "testbed", "size": args.size, "rate_mbit": args.rate,
              "shaper": args.shaper, "burst_bytes": args.burst, "offload": args.offload,
              "small_first": args.small_first, "small_first_packets": small_packets,
              "byte_fifo": args.byte_fifo, "host_fq": args.host_fq, "tcp_congestion_control": tcp,
              "loadavg_at_start": harness.LOADAVG_AT_START,
              "lower_bound_s": round(lower_bound, 3), "repeat": args.repeat, "table": table, "rows": rows,
              "family": args.family,
              "hosts": {ns[len(bed.tag):]: [a for a in (bed.addr4.get(ns), bed.addr6.get(ns)) if a]
                        for ns in bed.namespaces},
              "machine": harness.machine(), "argv": sys.argv[1:], "hosts_python": args.python,
              "clean_after": not left}
    _write(args.out, json.dumps(result, indent=2) + "\n")
    _write(args.svg, svg_chart(table, lower_bound, "%s to each host, %g Mbit/s links"
                               % (harness.human(args.size), args.rate)))
    print("lower bound %.2f s; results in %s, chart in %s" % (lower_bound, args.out, args.svg))
    if left:
        sys.stderr.write("testbed: namespaces left behind: %s\n" % " ".join(left))
        return 1
    return 0


def median_rows(rows: List[dict]) -> List[dict]:
    """Per (hosts, scenario), the run whose time to the last copy is the median (the
    lower middle one of an even count), with every run's time beside it."""
    groups: Dict[tuple, List[dict]] = {}
    for row in rows:
        groups.setdefault((row["hosts"], row["scenario"]), []).append(row)
    table = []
    for runs in groups.values():
        ordered = sorted(runs, key=lambda r: r["last_s"])
        row = dict(ordered[(len(ordered) - 1) // 2])
        row["runs_last_s"] = [r["last_s"] for r in runs]
        table.append(row)
    return table


def _line(row: dict) -> str:
    text = "%-8s n=%-3d last %7.2f s (%.2fx bound)  median %7.2f s  origin egress %.3fx" % (
        row["scenario"], row["hosts"], row["last_s"], row["vs_lower_bound"], row["median_host_s"],
        row["origin_egress_x"])
    if "peer_share" in row:
        text += "  peers carried %.1f%%" % (100 * row["peer_share"])
        if row.get("startup_s") is not None:
            text += "  start %.2f s" % row["startup_s"]
    if row["cpu"].get("busy_fraction") is not None:   # every host shares this machine's cores
        text += "  CPU %.0f%% busy (%.1f CPU-s stolen), downloads %.1f CPU-s" % (
            100 * row["cpu"]["busy_fraction"], row["cpu"].get("steal_cpu_s", 0.0), row["host_cpu_s"])
        if row["cpu"]["busy_fraction"] >= CPU_BOUND:   # then the time measures the CPU, not the links
            text += "  [CPU-bound]"
    return text


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    sys.exit(main())
