"""One detached seeder per user and data dir, and how `get` and `dfly seeders` talk to it.

The running seeder listens on a Unix socket in its data dir (DATA_DIR/peer/
seeder.sock: the folder is the user's, and the seeder answers only its own
user, checked by SO_PEERCRED), one JSON request per connection, one JSON
answer:

    {"op": "ping"}                     -> {"pid": N}
    {"op": "list"}                     -> {"pid", "port", "seed_for_s", "idle_s", "tasks": [...]}
    {"op": "adopt", "tasks": [...], "seed_for_s": S, "supernodes": [...]}
                                       -> {"pid", "adopted": [task ids]}
    {"op": "stop"}                     -> {"pid"}, then it leaves its tasks and exits

A `get` that finishes while one runs hands its files over ("adopt": the seeder
announces itself as their holder, then the get leaves), so a script fetching 50
files leaves one process, not 50.
"""
import json
import os
import socket
import struct
from typing import Optional

from dfly import errors

SOCKET_NAME = "seeder.sock"
CALL_TIMEOUT_S = 15.0   # an adopt announces each task to a supernode (5 s each at worst)
MAX_MESSAGE = 16 << 20


def socket_path(data_dir: str) -> str:
    return os.path.join(data_dir, "peer", SOCKET_NAME)


def call(data_dir: str, request: dict, timeout_s: float = CALL_TIMEOUT_S) -> Optional[dict]:
    """The running seeder's answer to `request`; None when none runs for `data_dir`."""
    path = socket_path(data_dir)
    if not os.path.exists(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(path)
        sock.sendall(json.dumps(request).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        answer = _read_all(sock)
    except OSError:   # a socket left by a seeder that died, or one too busy to answer
        return None
    finally:
        sock.close()
    try:
        value = json.loads(answer.decode("utf-8"))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _read_all(sock: socket.socket) -> bytes:
    chunks, size = [], 0
    while size <= MAX_MESSAGE:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def listen(data_dir: str) -> Optional[socket.socket]:
    """The control socket for a seeder starting in `data_dir`; None when another seeder
    answers there already (two gets finishing at once) or the path is unusable."""
    path = socket_path(data_dir)
    if call(data_dir, {"op": "ping"}, timeout_s=2.0) is not None:
        return None
    try:
        os.remove(path)   # a dead seeder's
    except OSError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)   # 0600 from the start: only this user connects
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        sock.listen(16)
    except OSError:
        sock.close()
        return None
    return sock


def same_user(conn: socket.socket) -> bool:
    """Whether the peer of `conn` runs as this process's user (Linux SO_PEERCRED; where
    that is missing, the socket file's 0600 mode is the only guard)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return True
    try:
        _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, option,
                                                        struct.calcsize("3i")))
    except OSError:
        return False
    return uid == os.getuid()


def read_request(conn: socket.socket) -> dict:
    data = _read_all(conn)
    try:
        value = json.loads(data.decode("utf-8"))
    except ValueError:
        raise errors.BadRequest("not a JSON request")
    if not isinstance(value, dict):
        raise errors.BadRequest("not a JSON object")
    return value


def answer(conn: socket.socket, value: dict) -> None:
    try:
        conn.sendall(json.dumps(value).encode() + b"\n")
    except OSError:
        pass
