"""The peer's uploader: serves the verified pieces it holds to other peers.

Serves only pieces marked held (verified), from the file the download writes
or, after it finished, the finished file; bodies go out with sendfile. Ids from
the wire are validated before any lookup, so no request can name a path.
Routes: GET /healthz, GET /v1/tasks/{id}/pieces/{n}.

A piece goes only to a requester the supernode scheduled for the task: the
request carries a piece token (protocol/piecetoken.py) minted with one of our
peer secrets (`secrets`, the PeerSecrets of our peer id), else 403.

Cut-through: a piece this peer is still fetching (the supernode may name us
for it as soon as we are given it) is served as it arrives. Its blocks are
verified before they are written (piece_client.py), so only verified bytes go
out; the answer says `X-Dfly-Relay: arriving`, and waits for each next block
at least RELAY_WAIT_S, longer as the blocks have come slower so far
(storage.relay_deadline). When our fetch fails or stalls past that, the body ends
short: the requester sees a relay that stopped, not a bad copy, and is planned
again (we pass on nothing we did not verify, so a bad block from us is ours).
"""
import threading
import time
from typing import Callable, Dict, Optional

from dfly.errors import BadRequest, Forbidden, NotFound
from dfly.httpd import FileSlice, Request, Response, compile_routes, match_route, piece_number
from dfly.protocol import piecetoken
from dfly.protocol.messages import RELAY_HEADER, RELAY_WAIT_S
from dfly.protocol.task import TASK_ID

ROUTES = compile_routes([
    ("GET", r"/healthz", "healthz"),
    ("GET", r"/v1/tasks/(?P<tid>[^/]+)/pieces/(?P<num>[^/]+)", "piece"),
])


class UploaderApp:
    def __init__(self, clock: Callable[[], float] = time.monotonic, throttle=None, secrets=None,
                 wall_clock: Callable[[], float] = time.time):
        """`throttle`: a TokenBucket shared by every upload of this host, or None.
        `secrets`: our peer id's PeerSecrets (its keys() check piece tokens); None
        refuses every piece request (nobody could have been scheduled to us)."""
        self.clock = clock
        self.wall_clock = wall_clock   # token expiries are wall-clock times (minted elsewhere)
        self.throttle = throttle
        self.secrets = secrets
        self._files: Dict[str, object] = {}   # task id -> PieceFile-like (path, held, piece_slice)
        self._lock = threading.Lock()   # also for the counts: `+=` from the connections' threads can lose one
        self.last_request = clock()
        self.uploaded_bytes = 0
        self.relayed_pieces = 0   # pieces served while still arriving (cut-through)
        self.relay_wait_s = RELAY_WAIT_S

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
        keys = self.secrets.keys() if self.secrets is not None else []
        why = piecetoken.refusal(request.headers.get(piecetoken.HEADER), keys, tid,
                                 request.query.get("peer", [""])[0], self.wall_clock())
        if why is not None:
            raise Forbidden(why)
        with self._lock:
            pieces = self._files.get(tid)
        where: Optional[tuple] = pieces.piece_slice(n) if pieces is not None else None
        if where is None:
            return self._relay(pieces, tid, n)
        with self._lock:
            self.uploaded_bytes += where[1]
        return Response(200, FileSlice(pieces.path, where[0], where[1], self.throttle),
                        {"Content-Type": "application/octet-stream"})

    def _relay(self, pieces, tid: str, n: int) -> Response:
        """Piece `n` while it arrives: its verified bytes as they land."""
        arriving = getattr(pieces, "arriving_slice", None)   # (a finished file has none)
        where = arriving(n) if arriving is not None else None
        if where is None:
            raise NotFound("piece %d of task %s is not here" % (n, tid[:12]))
        with self._lock:
            self.uploaded_bytes += where[1]
            self.relayed_pieces += 1
        wait = self.relay_wait_s
        body = FileSlice(pieces.path, where[0], where[1], self.throttle,
                         ready=lambda sent: pieces.verified_end(n, sent, wait))
        return Response(200, body, {"Content-Type": "application/octet-stream", RELAY_HEADER: "arriving"})
