"""The detached seeder: keeps serving a finished download's pieces after
`dfly get` has returned, until nobody asked for a piece for `seed_for_s`.

`get` hands over its listening socket (so the port the supernode knows stays
the same and no connection is refused), plus a JSON spec; the child answers
"ready" and the parent closes its own copy. The child heartbeats each task to
its supernode, and leaves the tasks and removes its hard links on exit. A
heartbeat reply may name pieces other peers discarded from us: each is read
back and checked against its digest; a bad one is no longer served (it stays
withdrawn at the supernode, and is left out of any later announce), a good one
is reported done again. The seeder cannot fetch it again: its file is the
user's, finished and verified once.

The child is normally a `Spare`: forked when `get` starts, while the process
still has one thread, and parked until the download is done. It then needs no
interpreter start and no imports, which are most of a short `get`'s CPU and,
on a busy host, time other downloads lose. Without fork (or with threads
already running) a fresh interpreter is started instead, spec on its stdin.
"""
import array
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

from dfly import errors
from dfly.httpd import Listener
from dfly.lifecycle import formatter
from dfly.peer import seeders
from dfly.peer.storage import FinishedFile
from dfly.peer.uploader import UploaderApp
from dfly.protocol.address import CLIENT_IPV6_PREFIX
from dfly.protocol.messages import PieceCheck, RegisterRequest, ScheduleRequest, stale
from dfly.protocol.pieces import piece_count
from dfly.scrub import piece_is_good
from dfly.supernode.client import PeerSecrets, SupernodeClient, announce_holder, leave_quietly
from dfly.tls import TLS, TLSOptions

log = logging.getLogger("dfly.seeder")

HEARTBEAT_S = 5.0
HANDOFF_DRAIN_S = 30.0
READY_TIMEOUT_S = 10.0


def log_path_in(data_dir: str) -> str:
    return os.path.join(data_dir, "logs", "seeder.log")


class Spare:
    """A forked child parked on a socketpair until `hand_over` gives it a spec and
    the listening socket (SCM_RIGHTS); end of file instead means "not needed"."""

    def __init__(self, pid: int, sock: socket.socket, ready_timeout_s: float = READY_TIMEOUT_S):
        self.pid, self._sock = pid, sock
        self.ready_timeout_s = ready_timeout_s

    @classmethod
    def fork(cls, data_dir: str) -> Optional["Spare"]:
        """None where fork is missing or unsafe (another thread could hold a lock
        the child would inherit held)."""
        if not hasattr(os, "fork") or threading.active_count() > 1:
            return None
        log_path = log_path_in(data_dir)
        try:
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
            ours, theirs = socket.socketpair()
            try:
                pid = os.fork()
            except OSError:
                ours.close()
                theirs.close()
                raise
        except OSError as e:
            log.warning("cannot fork a seeder (%s); one will be started when needed", e)
            return None
        if pid == 0:   # the child never returns into the caller's code
            code = 1
            try:
                ours.close()
                code = _spare_main(theirs, log_path)
            finally:
                os._exit(code)
        theirs.close()
        return cls(pid, ours)

    def hand_over(self, spec: dict, fd: int) -> bool:
        """Give the child its work; True once it serves on `fd`."""
        try:
            self._sock.settimeout(self.ready_timeout_s)
            self._sock.sendmsg([b"S"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
            self._sock.sendall(json.dumps(spec).encode())
            self._sock.shutdown(socket.SHUT_WR)
            with self._sock.makefile("rb") as answer:
                return answer.readline().strip() == b"ready"
        except OSError as e:
            log.warning("the seeder did not take over: %s", e)
            return False
        finally:
            self.close()

    def close(self) -> None:
        """Unused, the child reads end of file and exits."""
        self._sock.close()

    def kill(self) -> None:
        """It failed to take over (died, or did not answer): make sure it is gone,
        so that it cannot serve beside the seeder started instead."""
        self.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass   # gone already, or not our child


def _spare_main(sock: socket.socket, log_path: str) -> int:
    os.setsid()   # as start_new_session: the terminal's Ctrl-C is for `get`, not its seeder
    _stdio_to(log_path)   # at once: whoever reads get's stdout waits for every copy to close
    _release_inherited(keep=sock.fileno())   # as close_fds: a pipe get inherited is not ours to hold
    marker, fds = _receive_fd(sock)
    if not marker or not fds:
        return 0
    with sock.makefile("rb") as f:
        spec = json.loads(f.read())
    log_as(spec, force=True)
    return run(spec, socket.socket(fileno=fds[0]), lambda: sock.sendall(b"ready\n"))


def _stdio_to(log_path: str) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    err = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for fd, target in ((0, devnull), (1, devnull), (2, err)):
        os.dup2(target, fd)
    os.close(devnull)
    os.close(err)
    # fresh objects: the inherited ones may hold the parent's unwritten output
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)


def _release_inherited(keep: int) -> None:
    """Point every other inherited descriptor at /dev/null rather than close it: a
    Python object of get's that owns one may close it later, and must not close
    a socket that has since been given the same number."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:   # no /proc: the usual range
        fds = list(range(3, 256))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in fds:
        if fd > 2 and fd not in (keep, devnull):
            try:
                os.fstat(fd)   # dup2 would open a number that is not open
            except OSError:   # the listing's own descriptor, or a gap in the range
                continue
            os.dup2(devnull, fd)
    os.close(devnull)


def _receive_fd(sock: socket.socket):
    size = array.array("i").itemsize
    data, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(size))
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % size])
    return data, list(fds)


def task_specs(uploader: UploaderApp, tasks: Dict[str, str], peer_id: str, data_dir: str,
               registrations: Optional[Dict[str, RegisterRequest]] = None) -> List[dict]:
    """What a seeder needs to serve each finished task of `uploader`: its file (hard
    linked under DATA_DIR/peer/seeds, so it survives the user deleting or moving it),
    geometry, content version and how it was registered."""
    seeds = os.path.join(data_dir, "peer", "seeds")
    os.makedirs(seeds, exist_ok=True)
    registrations = registrations or {}
    out = []
    for task_id, supernode in tasks.items():
        pieces = uploader.served(task_id)
        if pieces is None or pieces.length is None:
            continue
        link = os.path.join(seeds, "%s.%s" % (task_id, peer_id))
        try:
            os.link(pieces.path, link)
            owned = True
        except OSError:
            link, owned = pieces.path, False
        request = registrations.get(task_id)
        out.append({"task_id": task_id, "supernode": supernode, "path": link, "owned": owned,
                    "file": pieces.path, "length": pieces.length, "piece_size": pieces.piece_size,
                    "content_version": getattr(pieces, "content_version", ""),
                    "register": request.to_json() if request is not None else None})
    return out


def detach(listener: Listener, uploader: UploaderApp, tasks: Dict[str, str], peer_id: str,
           seed_for_s: float, data_dir: str, supernodes: Sequence[str] = (),
           registrations: Optional[Dict[str, RegisterRequest]] = None,
           spare: Optional[Spare] = None, tls: Optional[TLS] = None,
           secrets: Optional[PeerSecrets] = None, log_format: str = "text") -> int:
    """Hand the listener to a seeder (`spare`, else a new process); returns its pid
    (0 if it failed). With `supernodes` and `registrations`, it announces itself
    again to another supernode when the one it used dies or forgets it. It serves
    later gets' files too (hand_to_running). With `tls`, the seeder loads the same
    certificate files (and follows their changes)."""
    spec = {"fd": listener.fileno(), "peer_id": peer_id, "seed_for_s": seed_for_s,
            "tasks": task_specs(uploader, tasks, peer_id, data_dir, registrations),
            "supernodes": list(supernodes), "data_dir": data_dir,
            "tls": vars(tls.options) if tls is not None else None,
            "secrets": secrets.to_json() if secrets is not None else {},
            "log_format": log_format,
            "client_ipv6_prefix": listener.server.client_ipv6_prefix}   # the same limits as get's
    pid = 0
    if spare is not None:
        if spare.hand_over(spec, spec["fd"]):
            pid = spare.pid
        else:   # the pieces are still served, by a new process
            spare.kill()
    if not pid:
        pid = _start_process(spec, data_dir)
    # The seeder accepts from now on; pieces we are still sending must not be cut
    # (the peer fetching one would blacklist this host and go to the supernode).
    listener.stop(drain_s=HANDOFF_DRAIN_S)
    return pid


def hand_to_running(listener: Listener, uploader: UploaderApp, tasks: Dict[str, str], peer_id: str,
                    seed_for_s: float, data_dir: str, supernodes: Sequence[str] = (),
                    registrations: Optional[Dict[str, RegisterRequest]] = None,
                    tls: Optional[TLS] = None, secrets: Optional[PeerSecrets] = None) -> int:
    """Give the finished tasks to the seeder already running for `data_dir`: it announces
    itself as their holder, then we leave them. Its pid; 0 when none runs or it took
    none (then detach)."""
    if seeders.call(data_dir, {"op": "ping"}, timeout_s=2.0) is None:
        return 0
    specs = task_specs(uploader, tasks, peer_id, data_dir, registrations)
    reply = seeders.call(data_dir, {"op": "adopt", "tasks": specs, "seed_for_s": seed_for_s,
                                    "supernodes": list(supernodes)})
    adopted = set(reply.get("adopted") or []) if reply else set()
    for spec in specs:
        if spec["task_id"] not in adopted and spec["owned"]:
            _remove(spec["path"])
    if not adopted or adopted != {spec["task_id"] for spec in specs}:
        return 0   # detach serves them all (a task the seeder took is then served twice, briefly)
    for task_id, supernode in tasks.items():
        leave_quietly(supernode, task_id, peer_id, tls, secrets)   # no new assignments to this process
    listener.stop(drain_s=HANDOFF_DRAIN_S)   # the transfers under way still finish
    return int(reply.get("pid") or 0)


def _start_process(spec: dict, data_dir: str) -> int:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = "import sys; sys.path.insert(0, %r); from dfly.peer.seeder import main; sys.exit(main())" % root
    log_path = log_path_in(data_dir)
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=log_file,
                                 pass_fds=(spec["fd"],), start_new_session=True)
    child.stdin.write(json.dumps(spec).encode())
    child.stdin.close()
    ready = child.stdout.readline().strip() == b"ready"
    child.stdout.close()
    return child.pid if ready else 0


LOG_FORMAT = "%(asctime)s seeder %(process)d: %(message)s"


def log_as(spec: dict, force: bool = False) -> None:
    """Log to stderr (the seeder's log file) as text, or as JSON lines (`log_format`)."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(spec.get("log_format", "text"), LOG_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=force)


def main() -> int:
    """The seeder as a fresh process: spec on stdin, "ready" on stdout."""
    spec = json.loads(sys.stdin.read())
    log_as(spec)

    def ready():
        sys.stdout.write("ready\n")
        sys.stdout.flush()
    return run(spec, socket.socket(fileno=spec["fd"]), ready)


def run(spec: dict, sock: socket.socket, ready: Callable[[], None]) -> int:
    """Serve the spec's tasks on `sock` until idle (or told to stop); `ready` once
    accepting. Later gets hand their tasks over through the control socket."""
    app = UploaderApp(secrets=_secrets(spec))
    for t in spec["tasks"]:
        app.publish(t["task_id"], FinishedFile(t["path"], t["length"], t["piece_size"]))
    tls = TLS(TLSOptions(**spec["tls"])) if spec.get("tls") else None
    if tls is not None:
        signal.signal(signal.SIGHUP, lambda *_: tls.reload())
    listener = _listener(spec, app, sock, tls).start()
    seeding = _Seeding(app, spec, listener.address[1], tls)
    control = seeders.listen(spec["data_dir"]) if spec.get("data_dir") else None
    if control is not None:
        threading.Thread(target=_control_loop, args=(control, seeding), name="seeder-control",
                         daemon=True).start()
    ready()
    if control is None and spec.get("data_dir") and _merged_into_running(spec, tls):
        listener.stop(drain_s=HANDOFF_DRAIN_S)   # the transfers under way still finish
        return 0
    try:
        serve(app, spec, seeding)
    finally:
        if control is not None:
            control.close()
            _remove(seeders.socket_path(spec["data_dir"]))
        listener.stop()
        for t in seeding.all_tasks():
            leave_quietly(t["supernode"], t["task_id"], spec["peer_id"], tls, _secrets(spec))
            if t["owned"]:
                _remove(t["path"])
    return 0


def _listener(spec: dict, app: UploaderApp, sock: socket.socket, tls: Optional[TLS]) -> Listener:
    """The seeder's listener on the socket `get` handed over, limiting clients as get's did."""
    return Listener("seeder", None, app, sock=sock, tls=tls,
                    client_ipv6_prefix=spec.get("client_ipv6_prefix", CLIENT_IPV6_PREFIX))


def _merged_into_running(spec: dict, tls: Optional[TLS] = None) -> bool:
    """Another seeder answers for this data dir (two gets finished at once): hand it our
    tasks, as a later get would, and leave them. False when it did not take them all."""
    tasks = spec["tasks"]
    reply = seeders.call(spec["data_dir"], {"op": "adopt", "tasks": tasks,
                                            "seed_for_s": spec["seed_for_s"],
                                            "supernodes": spec["supernodes"]})
    adopted = set(reply.get("adopted") or []) if reply else set()
    if not tasks or adopted != {t["task_id"] for t in tasks}:
        for t in tasks:   # we serve them all ourselves; a link the other took stays its own
            t["owned"] = t["owned"] and t["task_id"] not in adopted
        return False
    for t in tasks:   # its links are the other seeder's to remove now
        leave_quietly(t["supernode"], t["task_id"], spec["peer_id"], tls, _secrets(spec))
    log.info("handed %d task(s) to the seeder already running for %s", len(tasks), spec["data_dir"])
    return True


class _Seeding:
    """The tasks a seeder serves, shared by its heartbeat loop and its control thread."""

    def __init__(self, app: UploaderApp, spec: dict, port: int, tls: Optional[TLS] = None):
        self.app, self.spec, self.port, self.tls = app, spec, port, tls
        self.lock = threading.Lock()
        self.tasks = {t["task_id"]: t for t in spec["tasks"]}
        self.ended: List[dict] = []   # no longer served: left at exit all the same
        self.stopped = threading.Event()

    def all_tasks(self) -> List[dict]:
        with self.lock:
            return list(self.tasks.values()) + self.ended

    def drop(self, task_id: str) -> None:
        self.app.withdraw(task_id)
        with self.lock:
            task = self.tasks.pop(task_id, None)
            if task is not None:
                self.ended.append(task)

    def adopt(self, request: dict) -> List[str]:
        """Serve another get's finished tasks: announce ourselves as their holder."""
        adopted = []
        supernodes = [s for s in request.get("supernodes") or [] if isinstance(s, str)]
        for task in request.get("tasks") or []:
            try:
                task_id = self._adopt_one(task, supernodes)
            except (errors.DflyError, KeyError, TypeError, ValueError) as e:
                log.warning("could not take over a task: %s", e)
                continue
            if task_id:
                adopted.append(task_id)
        with self.lock:
            self.spec["seed_for_s"] = max(self.spec["seed_for_s"], float(request.get("seed_for_s") or 0))
            self.spec["supernodes"] = list(dict.fromkeys(self.spec["supernodes"] + supernodes))
        self.app.last_request = time.monotonic()   # a new file: a full --seed-for from now
        return adopted

    def _adopt_one(self, task: dict, supernodes: List[str]) -> str:
        theirs = RegisterRequest.parse(task["register"])
        ours = dataclasses.replace(theirs, peer_id=self.spec["peer_id"], peer_port=self.port)
        task_id = task["task_id"]
        pieces = FinishedFile(task["path"], task["length"], task["piece_size"])
        self.app.publish(task_id, pieces)
        others = [task["supernode"]] + [s for s in supernodes if s != task["supernode"]]
        address = announce_holder(others, ours, piece_count(task["length"], task["piece_size"]),
                                  content_version=task.get("content_version") or "", tls=self.tls,
                                  secrets=_secrets(self.spec))
        if address is None:
            self.app.withdraw(task_id)
            return ""
        with self.lock:
            self.tasks[task_id] = dict(task, supernode=address, register=ours.to_json())
        log.info("task %s taken over from another get (%s)", task_id[:12], task.get("file", ""))
        return task_id

    def listing(self) -> dict:
        with self.lock:
            tasks = [{"task_id": t["task_id"], "file": t.get("file", ""), "length": t["length"]}
                     for t in self.tasks.values()]
            seed_for_s = self.spec["seed_for_s"]
        return {"pid": os.getpid(), "port": self.port, "seed_for_s": seed_for_s,
                "idle_s": round(time.monotonic() - self.app.last_request, 1), "tasks": tasks}


def _control_loop(control: socket.socket, seeding: _Seeding) -> None:
    """Answer `get` and `dfly seeders` on the control socket, one request at a time."""
    while not seeding.stopped.is_set():
        try:
            conn, _ = control.accept()
        except OSError:   # closed: the seeder is stopping
            return
        with conn:
            conn.settimeout(seeders.CALL_TIMEOUT_S)
            try:
                if not seeders.same_user(conn):
                    continue
                request = seeders.read_request(conn)
            except (OSError, errors.DflyError):
                continue
            op = request.get("op")
            if op == "adopt":
                seeders.answer(conn, {"pid": os.getpid(), "adopted": seeding.adopt(request)})
            elif op == "list":
                seeders.answer(conn, seeding.listing())
            elif op == "stop":
                log.info("told to stop by dfly seeders --stop")
                seeding.stopped.set()
                seeders.answer(conn, {"pid": os.getpid()})
            else:
                seeders.answer(conn, {"pid": os.getpid()})


def serve(app: UploaderApp, spec: dict, seeding: Optional[_Seeding] = None) -> None:
    """Heartbeat until idle for seed_for_s, told to stop, or no supernode wants us any more."""
    seeding = seeding or _Seeding(app, spec, 0)
    while True:
        with seeding.lock:
            tasks = dict(seeding.tasks)
        if not tasks or seeding.stopped.is_set():
            return
        idle = time.monotonic() - app.last_request
        if idle >= spec["seed_for_s"]:
            log.info("idle for %.0fs, stopping", idle)
            return
        for task_id, task in tasks.items():
            if not _heartbeat(task, spec, app.served(task_id), seeding.tls):
                log.info("task %s no longer wanted by any supernode", task_id[:12])
                seeding.drop(task_id)
        seeding.stopped.wait(min(HEARTBEAT_S, max(0.1, spec["seed_for_s"] - idle)))


def _heartbeat(task: dict, spec: dict, pieces=None, tls: Optional[TLS] = None) -> bool:
    """Tell the task's supernode we still serve it (and check the pieces it says
    others discarded); when it is gone or forgot us, announce ourselves to the
    others. False when no supernode will have us."""
    client = SupernodeClient(task["supernode"], timeout_s=5, tls=tls, secrets=_secrets(spec))
    held = task.get("content_version") or ""
    try:
        reply = client.heartbeat(task["task_id"], spec["peer_id"])
        current = reply.content_version
    except errors.DflyError as e:
        log.warning("heartbeat for %s to %s failed: %s", task["task_id"][:12], task["supernode"], e)
        current, down = None, not isinstance(e, errors.Gone)
    finally:
        client.close()
    if current is not None:
        if not stale(held, current):
            if reply.checks and pieces is not None:
                _recheck(task, spec["peer_id"], pieces, reply.checks, tls, _secrets(spec))
            return True
        log.info("task %s: the source changed (content version %s, now %s); its pieces are "
                 "no longer offered", task["task_id"][:12], held, current)
        leave_quietly(task["supernode"], task["task_id"], spec["peer_id"], tls, _secrets(spec))
        return False
    if task.get("register") is None:
        return down   # nothing to announce with: keep serving while the supernode may return
    others = [task["supernode"]] + [s for s in spec["supernodes"] if s != task["supernode"]]
    count = piece_count(task["length"], task["piece_size"])
    try:
        address = announce_holder(others, RegisterRequest.parse(task["register"]), count,
                                  content_version=held,
                                  held=sorted(pieces.held) if pieces is not None else None, tls=tls,
                                  secrets=_secrets(spec))
    except errors.SourceChanged as e:
        log.info("task %s: %s; its pieces are no longer offered", task["task_id"][:12], e)
        return False
    if address is not None:
        log.info("task %s announced to %s", task["task_id"][:12], address)
        task["supernode"] = address
        return True
    return down


def _recheck(task: dict, peer_id: str, pieces, checks: List[PieceCheck],
             tls: Optional[TLS] = None, secrets: Optional[PeerSecrets] = None) -> None:
    """Read back the pieces peers discarded from us: stop serving the bad ones,
    report the good ones done again (the supernode withdrew them meanwhile)."""
    task_id, good = task["task_id"], []
    for check in checks:
        where = pieces.piece_slice(check.num)
        if where is None:
            continue
        if piece_is_good(pieces.path, where[0], where[1], check.sha256):
            good.append(check.num)
        else:
            pieces.held.discard(check.num)
            log.warning("task %s piece %d damaged in %s: no longer served", task_id[:12], check.num,
                        pieces.path)
    if not good:
        return
    client = SupernodeClient(task["supernode"], timeout_s=5, tls=tls, secrets=secrets)
    try:
        client.schedule(task_id, ScheduleRequest(peer_id, done=good, want=0,
                                                 content_version=task.get("content_version") or None))
    except errors.DflyError as e:
        log.warning("cannot report task %s pieces good again: %s", task_id[:12], e)
    finally:
        client.close()


def _secrets(spec: dict) -> PeerSecrets:
    """What proves our peer id to each supernode (get's, handed over in the spec)."""
    if "peer_secrets" not in spec:
        spec["peer_secrets"] = PeerSecrets(spec.get("secrets"))
    return spec["peer_secrets"]


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
