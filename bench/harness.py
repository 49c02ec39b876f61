"""The benchmarks' shared harness: a temp workspace, real processes, figures.

Every benchmark drives the built zipapp as separate processes on 127.0.0.1,
exactly as a user would: an nginx origin (which counts the body bytes it sends
in its own access log), a `dfly supernode`, and `dfly get` clients. Everything
lives in one temporary folder that is removed at the end, and every process
started here is stopped here, including the seeders `dfly get --seed-for`
leaves behind (found by their working directory, which is inside that folder).
Readiness is an address that answers (or a log line naming it), never a sleep.
"""
import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MiB = 1 << 20
GiB = 1 << 30

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CURL = shutil.which("curl") or "curl"
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
LOADAVG_AT_START = os.getloadavg()[0]   # other work on the machine skews every figure


# --- small helpers ---------------------------------------------------------------------
def wait_until(pred: Callable[[], object], timeout_s: float, what: str, step_s: float = 0.02):
    """Return pred()'s first truthy value; RuntimeError naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %.0fs waiting for %s" % (timeout_s, what))
        time.sleep(step_s)


def settle() -> None:
    """Flush dirty pages before a timed run, so one run's writeback (1 GiB outputs
    on a VM disk) does not land in the next run's time."""
    os.sync()


class CpuMeter:
    """Machine-wide CPU use between start and stop, from /proc/stat: busy CPU-seconds
    and how busy all cores were on average (1.0 = every core saturated), and of the
    busy time how much the hypervisor gave to other guests (steal): on a shared
    host that is what makes the same run slower in one hour than in the next."""

    def __init__(self):
        self._start = _cpu_times()
        self._t0 = time.monotonic()

    def stop(self) -> dict:
        end, t1 = _cpu_times(), time.monotonic()
        if self._start is None or end is None:
            return {}
        tick = os.sysconf("SC_CLK_TCK")
        busy = (end[0] - self._start[0]) / tick
        total = (end[1] - self._start[1]) / tick
        return {"busy_cpu_s": round(busy, 2), "busy_fraction": round(busy / total, 3) if total else None,
                "steal_cpu_s": round((end[2] - self._start[2]) / tick, 2),
                "wall_s": round(t1 - self._t0, 3)}


def _cpu_times():
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
    steal = fields[7] if len(fields) > 7 else 0
    return sum(fields[:8]) - idle, sum(fields[:8]), steal


def median(values: List[float]) -> float:
    return statistics.median(values) if values else float("nan")


def free_port() -> int:
    """A port the kernel just handed out (for nginx, which cannot report port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def parse_size(text: str) -> int:
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", str(text), re.I)
    if not m:
        raise argparse.ArgumentTypeError("not a size: %r (try 1K, 256M, 2G)" % text)
    units = {"": 1, "k": 1 << 10, "m": MiB, "g": GiB, "t": 1 << 40}
    return int(float(m.group(1)) * units[m.group(2).lower()])


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0
    return str(n)


def write_file(path: str, size: int) -> None:
    """`size` incompressible bytes, fast: one random MiB repeated, each copy stamped
    with its index so no two pieces (or pieces' digests) are alike."""
    block = bytearray(os.urandom(MiB))
    with open(path, "wb") as f:
        left, n = size, 0
        while left > 0:
            block[:8] = n.to_bytes(8, "big")
            f.write(block[:min(MiB, left)])
            left -= MiB
            n += 1


def sha256_file(path: str) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * MiB), b""):
            h.update(block)
    return h.hexdigest()


PAGE_REPORTING = "/sys/module/page_reporting/parameters/page_reporting_order"


def free_page_reporting(path: str = PAGE_REPORTING) -> Optional[int]:
    """The guest's free page reporting order, when it reports to a hypervisor (a VM's
    freed memory goes back to the host, and each page touched again costs a host
    fault: writing a GiB of new file then took 0.2 to 2.5 CPU-s on one VM, so file
    figures swung 5x between runs); None when it does not. Orders above the largest
    free block (10 on x86) report nothing: `echo 11 > PAGE_REPORTING` stops it."""
    try:
        with open(path) as f:
            order = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return order if order <= 10 else None


def warn_free_page_reporting() -> None:
    if free_page_reporting() is not None:
        print("warning: free page reporting is on (%s): memory freed between runs goes back "
              "to the hypervisor and is slow to touch again; figures of big files vary "
              "several-fold. As root: echo 11 > %s" % (PAGE_REPORTING, PAGE_REPORTING),
              file=sys.stderr)


def machine() -> dict:
    def first_line(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return ""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    mem = 0
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "nproc": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem / GiB, 1),
            "loadavg_1m_at_start": round(LOADAVG_AT_START, 2),
            "free_page_reporting_order": free_page_reporting(),
            "python": platform.python_version(), "kernel": platform.release(),
            "nginx": first_line([NGINX, "-v"]), "curl": first_line([CURL, "--version"]),
            "dfly_commit": first_line(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]),
            "dfly_dirty": bool(first_line(["git", "-C", REPO, "status", "--porcelain", "dfly"]))}


# --- arguments and results -------------------------------------------------------------
def base_parser(name: str, doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/%s.py" % name, description=doc.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes and few runs (a smoke test)")
    p.add_argument("--runs", type=int, help="repetitions per measurement (median is reported)")
    p.add_argument("--pyz", help="use this dfly.pyz instead of building one from the working tree")
    p.add_argument("--tmp", help="parent folder for the temporary workspace (default: system temp)")
    p.add_argument("--out", help="result JSON (default: bench/results/%s[.quick].json)" % name)
    p.add_argument("--keep", action="store_true", help="keep the workspace (for debugging)")
    return p


def result_path(args, name: str) -> str:
    if args.out:
        return args.out
    return os.path.join(HERE, "results", "%s%s.json" % (name, ".quick" if args.quick else ""))


def build_info(args) -> dict:
    """Which dfly was measured: a given zipapp, or the working tree's dfly/ sources."""
    import hashlib
    h = hashlib.sha256()
    if args.pyz:
        with open(args.pyz, "rb") as f:
            h.update(f.read())
        return {"pyz": os.path.abspath(args.pyz), "sha256": h.hexdigest()[:16]}
    for folder, dirs, files in sorted(os.walk(os.path.join(REPO, "dfly"))):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), "rb") as f:
                    h.update(name.encode() + b"\0" + f.read())
    return {"pyz": "built from the working tree", "dfly_sources_sha256": h.hexdigest()[:16]}


def save(args, name: str, result: dict) -> str:
    path = result_path(args, name)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    result = dict(result, benchmark=name, quick=bool(args.quick), machine=machine(),
                  build=build_info(args), argv=sys.argv[1:])
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print("result written to %s" % os.path.relpath(path))
    return path


# --- the workspace ---------------------------------------------------------------------
class Workspace:
    """A temp folder plus every process started in it; `close` stops them all."""

    def __init__(self, parent: Optional[str] = None, keep: bool = False, pyz: Optional[str] = None):
        warn_free_page_reporting()
        self.root = tempfile.mkdtemp(prefix="dfly-bench-", dir=parent)
        os.chmod(self.root, 0o755)   # nginx's workers run as an unprivileged user
        self.keep = keep
        self._procs: List[subprocess.Popen] = []
        # Absolute: what it starts runs with the workspace as its working directory.
        self.pyz = os.path.abspath(pyz) if pyz else self._build_pyz()

    def _build_pyz(self) -> str:
        sys.path.insert(0, REPO)
        try:
            from build_zipapp import build
        finally:
            sys.path.remove(REPO)
        return build(os.path.join(self.root, "dfly.pyz"))

    def path(self, *parts: str) -> str:
        p = os.path.join(self.root, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def dir(self, *parts: str) -> str:
        p = os.path.join(self.root, *parts)
        os.makedirs(p, exist_ok=True)
        return p

    def popen(self, argv: List[str], **kw) -> subprocess.Popen:
        kw.setdefault("cwd", self.root)
        proc = subprocess.Popen(argv, **kw)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc in self._procs:
            self._procs.remove(proc)

    def seeders(self) -> List[int]:
        """Pids of detached `dfly get` seeders started from this workspace."""
        return [pid for pid in _pids_with_cwd_under(self.root) if _is_seeder(pid)]

    def stop_seeders(self, timeout_s: float = 10.0) -> int:
        pids = self.seeders()
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        try:
            wait_until(lambda: not any(_alive(p) for p in pids), timeout_s, "seeders to exit")
        except RuntimeError:
            for pid in pids:
                _signal(pid, signal.SIGKILL)
        return len(pids)

    def close(self) -> None:
        self.stop_seeders()
        for proc in reversed(list(self._procs)):
            self.stop(proc)
        leftovers = [pid for pid in _pids_with_cwd_under(self.root) if pid != os.getpid()]
        for pid in leftovers:   # anything else we started that outlived its parent
            _signal(pid, signal.SIGKILL)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            print("workspace kept: %s" % self.root)

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pids_with_cwd_under(root: str) -> List[int]:
    out = []
    root = os.path.realpath(root)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cwd = os.readlink("/proc/%s/cwd" % name)
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            out.append(int(name))
    return out


def _is_seeder(pid: int) -> bool:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"dfly.peer.seeder" in f.read()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


# --- the origin: nginx -----------------------------------------------------------------
NGINX_CONF = """\
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format body '$body_bytes_sent $status "$request"';
    access_log {root}/access.log body;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {www};
    }}
}}
"""


class Nginx:
    """nginx serving `www` on a loopback port; `body_bytes()` reads its access log."""

    def __init__(self, ws: Workspace, www: str):
        self.ws = ws
        self.root = ws.dir("nginx")
        os.makedirs(os.path.join(self.root, "tmp"), exist_ok=True)
        for _ in range(5):   # the port can be taken between free_port() and bind
            self.port = free_port()
            conf = os.path.join(self.root, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(root=self.root, port=self.port, www=www))
            self.proc = ws.popen([NGINX, "-c", conf, "-p", self.root, "-g", "daemon off;"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_until(lambda: self.proc.poll() is not None or port_open(self.port), 10,
                           "nginx on port %d" % self.port)
            except RuntimeError:
                ws.stop(self.proc)
                raise
            if self.proc.poll() is None:
                return
            ws.stop(self.proc)
        raise RuntimeError("nginx would not start; see %s/error.log" % self.root)

    def url(self, name: str) -> str:
        return "http://127.0.0.1:%d/%s" % (self.port, name)

    @property
    def access_log(self) -> str:
        return os.path.join(self.root, "access.log")

    def log_mark(self) -> int:
        """A position in the access log; body_bytes(since=mark) counts only what follows."""
        try:
            return os.path.getsize(self.access_log)
        except OSError:
            return 0

    def body_bytes(self, since: int = 0) -> Dict[str, int]:
        """{"bytes": body bytes sent, "requests": n, "statuses": {...}, "each": [[bytes,
        status], ...] in log order} from the log."""
        total, n, statuses, each = 0, 0, {}, []
        try:
            with open(self.access_log, "rb") as f:
                f.seek(since)
                for line in f.read().decode("latin-1").splitlines():
                    parts = line.split(" ", 2)
                    if len(parts) < 2 or not parts[0].isdigit():
                        continue
                    total += int(parts[0])
                    n += 1
                    statuses[parts[1]] = statuses.get(parts[1], 0) + 1
                    each.append([int(parts[0]), parts[1]])
        except OSError:
            pass
        return {"bytes": total, "requests": n, "statuses": statuses, "each": each}

    def stop(self) -> None:
        self.ws.stop(self.proc)


# --- dfly processes --------------------------------------------------------------------
@contextlib.contextmanager
def using_pyz(ws: "Workspace", pyz: str):
    """Within it, what harness starts from `ws` (Supernode, Daemon, get_argv) runs `pyz`:
    one workspace, two zipapps compared (an A/B of two trees)."""
    saved, ws.pyz = ws.pyz, pyz
    try:
        yield ws
    finally:
        ws.pyz = saved


class Supernode:
    """`dfly supernode` on 127.0.0.1 port 0 (or `listen`, for cluster members, which
    must know each other's addresses up front); the address is read from its log line."""

    def __init__(self, ws: Workspace, name: str = "supernode", extra: List[str] = (),
                 listen: str = "127.0.0.1:0"):
        self.ws = ws
        self.data_dir = ws.dir(name)
        self.log_path = os.path.join(self.data_dir, "stderr.log")
        self._log = open(self.log_path, "wb")
        self.proc = ws.popen([sys.executable, ws.pyz, "supernode", "--listen", listen,
                              "--data-dir", self.data_dir] + list(extra),
                             stdout=subprocess.DEVNULL, stderr=self._log)
        self.address = wait_until(self._listening, 20, "the supernode's listening line")

    def _listening(self) -> Optional[str]:
        if self.proc.poll() is not None:
            raise RuntimeError("supernode exited with %s; see %s" % (self.proc.returncode, self.log_path))
        with open(self.log_path, "rb") as f:
            m = re.search(rb"listening on ([0-9.]+):(\d+)", f.read())
        return "127.0.0.1:%s" % m.group(2).decode() if m else None

    def peak_rss_kib(self) -> Optional[int]:
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    def kill(self) -> None:
        """SIGKILL: the supernode dies with no chance to say goodbye (the HA case)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        self.ws.stop(self.proc)
        self._log.close()


class Daemon:
    """`dfly daemon` on 127.0.0.1 port 0 with a supernode and the given extra flags
    (a registry to mirror, proxy rules); its address read from its log."""

    def __init__(self, ws: Workspace, name: str, supernode: str, *flags: str):
        self.ws = ws
        self.data_dir = ws.dir(name)
        self.log_path = os.path.join(self.data_dir, "stderr.log")
        self._log = open(self.log_path, "wb")
        self.proc = ws.popen([sys.executable, ws.pyz, "daemon", "--listen", "127.0.0.1:0",
                              "--upload-listen", "127.0.0.1:0", "--supernode", supernode,
                              "--data-dir", self.data_dir] + list(flags),
                             stdout=subprocess.DEVNULL, stderr=self._log)
        self.address = wait_until(self._listening, 20, "the daemon's listening line")

    def _listening(self):
        if self.proc.poll() is not None:
            raise RuntimeError("daemon exited with %s; see %s" % (self.proc.returncode, self.log_path))
        with open(self.log_path, "rb") as f:
            m = re.search(rb"daemon listening on ([0-9.]+:\d+)", f.read())
        return m.group(1).decode() if m else None

    def stop(self) -> None:
        self.ws.stop(self.proc)
        self._log.close()


def served_file(ws: Workspace, size: int) -> Tuple[Nginx, str, str]:
    """A file of `size` bytes served by nginx from the workspace: (nginx, its URL, sha256)."""
    www = ws.dir("www")
    write_file(os.path.join(www, "file.bin"), size)
    nginx = Nginx(ws, www)
    return nginx, nginx.url("file.bin"), sha256_file(os.path.join(www, "file.bin"))


def get_argv(ws: Workspace, url: str, out: str, supernode: str, data_dir: str,
             seed_for: str = "0", extra: List[str] = ()) -> List[str]:
    return [sys.executable, ws.pyz, "get", url, "-o", out, "--supernode", supernode,
            "--data-dir", data_dir, "--seed-for", seed_for, "--upload-listen", "127.0.0.1:0",
            "--json"] + list(extra)


class Timed:
    """A started process with its start time; finish() waits and returns the figures."""

    def __init__(self, ws: Workspace, argv: List[str], name: str, gnu_time: bool = False):
        self.ws = ws
        self.name = name
        self.stderr_path = ws.path("logs", name + ".stderr")
        self.time_path = ws.path("logs", name + ".time") if gnu_time and GNU_TIME else None
        if self.time_path:
            argv = [GNU_TIME, "-v", "-o", self.time_path] + argv
        self._err = open(self.stderr_path, "wb")
        self.started = time.perf_counter()
        self.proc = ws.popen(argv, stdout=subprocess.PIPE, stderr=self._err)

        self.ended: Optional[float] = None

    def poll(self) -> bool:
        """True once the process has exited (and records when)."""
        if self.ended is None and self.proc.poll() is not None:
            self.ended = time.perf_counter()
        return self.ended is not None

    def finish(self, timeout_s: float) -> dict:
        try:
            stdout, _ = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.ws.stop(self.proc)
            raise RuntimeError("%s took over %.0fs" % (self.name, timeout_s))
        self.poll()
        wall = self.ended - self.started
        self._err.close()
        self.ws.stop(self.proc)
        out = {"name": self.name, "rc": self.proc.returncode, "wall_s": wall}
        if self.proc.returncode != 0:
            with open(self.stderr_path, "rb") as f:
                raise RuntimeError("%s exited %d: %s" % (self.name, self.proc.returncode,
                                                         f.read()[-2000:].decode("latin-1")))
        text = stdout.decode("utf-8", "replace").strip()
        if text.startswith("{"):
            out["json"] = json.loads(text.splitlines()[-1])
        if self.time_path:
            out.update(_gnu_time_figures(self.time_path))
        return out


def _gnu_time_figures(path: str) -> dict:
    """Peak RSS and CPU seconds (user + system) from `time -v`'s report."""
    with open(path) as f:
        text = f.read()
    out = {}
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if m:
        out["max_rss_kib"] = int(m.group(1))
    cpu = re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text)
    if len(cpu) == 2:
        out["cpu_s"] = round(float(cpu[0]) + float(cpu[1]), 3)
    return out


def _stat_fields(pid: int) -> Optional[List[str]]:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_cpu_s(pid: int) -> Optional[float]:
    """CPU seconds (user + system) a running process has used so far, from /proc."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_faults(pid: int) -> Optional[int]:
    """Page faults (minor) a running process has taken so far, from /proc."""
    fields = _stat_fields(pid)
    return int(fields[7]) if fields is not None else None


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a running process and its children (nginx: master and workers)."""
    total = process_cpu_s(pid) or 0.0
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            children = [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        children = []
    return total + sum(process_cpu_s(c) or 0.0 for c in children)


def finish_all(timed: List[Timed], timeout_s: float) -> List[dict]:
    """Wait for every process, noting each one's own end time (their stdout is one
    JSON line, far below a pipe's buffer, so polling cannot deadlock)."""
    wait_until(lambda: all([t.poll() for t in timed]), timeout_s, "%d processes" % len(timed),
               step_s=0.005)
    return [t.finish(10) for t in timed]


def run_timed(ws: Workspace, argv: List[str], name: str, timeout_s: float, gnu_time: bool = False) -> dict:
    return Timed(ws, argv, name, gnu_time).finish(timeout_s)


def curl_argv(url: str, out: str) -> List[str]:
    return [CURL, "-sS", "--fail", "-o", out, url]


def remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
