"""The peer's uploader: serves the verified pieces it holds to other peers.

Serves only pieces marked held (verified), from the file the download writes
or, after it finished, the finished file; bodies go out with sendfile. Ids from
the wire are validated before any lookup, so no request can name a path.
Routes: GET /healthz, GET /v1/tasks/{id}/pieces/{n}.
"""
import threading
import time
from typing import Callable, Dict, Optional

from dfly.errors import BadRequest, NotFound
from dfly.httpd import FileSlice, Request, Response, compile_routes, match_route, piece_number
from dfly.protocol.task import TASK_ID

ROUTES = compile_routes([
    ("GET", r"/healthz", "healthz"),
    ("GET", r"/v1/tasks/(?P<tid>[^/]+)/pieces/(?P<num>[^/]+)", "piece"),
])


class UploaderApp:
    def __init__(self, clock: Callable[[], float] = time.monotonic, throttle=None):
        """`throttle`: a TokenBucket shared by every upload of this host, or None."""
        self.clock = clock
        self.throttle = throttle
        self._files: Dict[str, object] = {}   # task id -> PieceFile-like (path, held, piece_slice)
        self._lock = threading.Lock()
        self.last_request = clock()
        self.uploaded_bytes = 0

    def publish(self, task_id: str, pieces) -> None:
        """Serve the held pieces of `pieces` (a PieceFile or SeedFile) for `task_id`."""
        with self._lock:
            self._files[task_id] = pieces

    def withdraw(self, task_id: str) -> None:
        with self._lock:
            self._files.pop(task_id, None)

    def withdraw_file(self, pieces) -> None:
        """Stop serving `pieces` under whatever task id it was published."""
        with self._lock:
            for task_id in [t for t, p in self._files.items() if p is pieces]:
                del self._files[task_id]

    def served(self, task_id: str):
        with self._lock:
            return self._files.get(task_id)

    def task_ids(self):
        with self._lock:
            return list(self._files)

    def route(self, request: Request) -> Response:
        self.last_request = self.clock()
        name, params = match_route(ROUTES, request)
        return getattr(self, name)(request, **params)

    def healthz(self, request: Request) -> Response:
        return Response.text("ok\n")

    def piece(self, request: Request, tid: str, num: str) -> Response:
        if not TASK_ID.match(tid):
            raise BadRequest("malformed task id")
        n = piece_number(num)
        with self._lock:
            pieces = self._files.get(tid)
        where: Optional[tuple] = pieces.piece_slice(n) if pieces is not None else None
        if where is None:
            raise NotFound("piece %d of task %s is not here" % (n, tid[:12]))
        self.uploaded_bytes += where[1]
        return Response(200, FileSlice(pieces.path, where[0], where[1], self.throttle),
                        {"Content-Type": "application/octet-stream"})
