"""The detached seeder: keeps serving a finished download's pieces after
`dfly get` has returned, until nobody asked for a piece for `seed_for_s`.

`get` hands over its listening socket (so the port the supernode knows stays
the same and no connection is refused), plus a JSON spec on stdin; the child
answers "ready" and the parent closes its own copy. The child heartbeats each
task to its supernode, and leaves the tasks and removes its hard links on exit.
"""
import json
import logging
import os
import socket
import subprocess
import sys
import time
from typing import Dict, Optional, Sequence

from dfly import errors
from dfly.httpd import Listener
from dfly.peer.storage import FinishedFile
from dfly.peer.uploader import UploaderApp
from dfly.protocol.messages import RegisterRequest
from dfly.protocol.pieces import piece_count
from dfly.supernode.client import SupernodeClient, announce_holder, leave_quietly

log = logging.getLogger("dfly.seeder")

HEARTBEAT_S = 5.0
HANDOFF_DRAIN_S = 30.0


def detach(listener: Listener, uploader: UploaderApp, tasks: Dict[str, str], peer_id: str,
           seed_for_s: float, data_dir: str, supernodes: Sequence[str] = (),
           registrations: Optional[Dict[str, RegisterRequest]] = None) -> int:
    """Start the seeder process, hand it the listener; returns its pid (0 if it failed).
    With `supernodes` and `registrations`, it announces itself again to another
    supernode when the one it used dies or forgets it."""
    seeds = os.path.join(data_dir, "peer", "seeds")
    os.makedirs(seeds, exist_ok=True)
    spec = {"fd": listener.fileno(), "peer_id": peer_id, "seed_for_s": seed_for_s, "tasks": [],
            "supernodes": list(supernodes)}
    registrations = registrations or {}
    for task_id, supernode in tasks.items():
        pieces = uploader.served(task_id)
        if pieces is None or pieces.length is None:
            continue
        link = os.path.join(seeds, "%s.%s" % (task_id, peer_id))
        try:   # a hard link survives the user deleting or moving the file
            os.link(pieces.path, link)
            owned = True
        except OSError:
            link, owned = pieces.path, False
        request = registrations.get(task_id)
        spec["tasks"].append({"task_id": task_id, "supernode": supernode, "path": link,
                              "owned": owned, "length": pieces.length,
                              "piece_size": pieces.piece_size,
                              "register": request.to_json() if request is not None else None})
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = "import sys; sys.path.insert(0, %r); from dfly.peer.seeder import main; sys.exit(main())" % root
    log_path = os.path.join(data_dir, "logs", "seeder.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=log_file,
                                 pass_fds=(spec["fd"],), start_new_session=True)
    child.stdin.write(json.dumps(spec).encode())
    child.stdin.close()
    ready = child.stdout.readline().strip() == b"ready"
    child.stdout.close()
    # The seeder accepts from now on; pieces we are still sending must not be cut
    # (the peer fetching one would blacklist this host and go to the supernode).
    listener.stop(drain_s=HANDOFF_DRAIN_S)
    return child.pid if ready else 0


def main() -> int:
    spec = json.loads(sys.stdin.read())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s seeder %(process)d: %(message)s")
    sock = socket.socket(fileno=spec["fd"])
    app = UploaderApp()
    for t in spec["tasks"]:
        app.publish(t["task_id"], FinishedFile(t["path"], t["length"], t["piece_size"]))
    listener = Listener("seeder", None, app, sock=sock).start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        serve(app, spec)
    finally:
        listener.stop()
        for t in spec["tasks"]:
            leave_quietly(t["supernode"], t["task_id"], spec["peer_id"])
            if t["owned"]:
                _remove(t["path"])
    return 0


def serve(app: UploaderApp, spec: dict) -> None:
    """Heartbeat until idle for seed_for_s or no supernode wants us any more."""
    tasks = {t["task_id"]: t for t in spec["tasks"]}
    while tasks:
        idle = time.monotonic() - app.last_request
        if idle >= spec["seed_for_s"]:
            log.info("idle for %.0fs, stopping", idle)
            return
        for task_id, task in list(tasks.items()):
            if not _heartbeat(task, spec):
                log.info("task %s no longer wanted by any supernode", task_id[:12])
                app.withdraw(task_id)
                del tasks[task_id]
        time.sleep(min(HEARTBEAT_S, max(0.1, spec["seed_for_s"] - idle)))


def _heartbeat(task: dict, spec: dict) -> bool:
    """Tell the task's supernode we still serve it; when it is gone or forgot us,
    announce ourselves to the others. False when no supernode will have us."""
    client = SupernodeClient(task["supernode"], timeout_s=5)
    try:
        client.heartbeat(task["task_id"], spec["peer_id"])
        return True
    except errors.DflyError as e:
        log.warning("heartbeat for %s to %s failed: %s", task["task_id"][:12], task["supernode"], e)
        down = not isinstance(e, errors.Gone)
    finally:
        client.close()
    if task.get("register") is None:
        return down   # nothing to announce with: keep serving while the supernode may return
    others = [task["supernode"]] + [s for s in spec["supernodes"] if s != task["supernode"]]
    count = piece_count(task["length"], task["piece_size"])
    address = announce_holder(others, RegisterRequest.parse(task["register"]), count)
    if address is not None:
        log.info("task %s announced to %s", task["task_id"][:12], address)
        task["supernode"] = address
        return True
    return down


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
