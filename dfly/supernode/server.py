"""The supernode's HTTP face: decode, call Supernode, encode. Nothing else.

Routes (docs/PROTOCOL.md):
  GET  /healthz                             -> "ok"
  GET  /v1/tasks                            -> [task summary]
  POST /v1/tasks                            -> register a peer for a URL
  GET  /v1/tasks/{id}                       -> task summary
  POST /v1/tasks/{id}/schedule              -> report results, get pieces to fetch
  POST /v1/tasks/{id}/peers/{peer}/heartbeat
  DELETE /v1/tasks/{id}/peers/{peer}        -> the peer leaves
  GET  /v1/tasks/{id}/pieces/{n}            -> piece bytes from the cache
  GET  /v1/cluster                          -> members, their health, task owners
  POST /v1/cluster/ping                     -> member to member: alive, tasks served
  GET  /v1/cluster/tasks/{id}               -> member to member: a task's metadata
  PUT  /v1/cluster/tasks/{id}               -> member to member: here is a task's metadata
  GET  /dashboard                           -> the live dashboard page (read-only)
  GET  /v1/dashboard?task=&offset=&limit=   -> its JSON feed (supernode/dashboard.py)
Preheat (supernode/preheat.py; Bearer --preheat-token-file), as Harbor calls it:
  GET  /_ping, /api/v1/_ping                -> Dragonfly 1.x health check
  POST /preheats, /api/v1/preheats          -> {"ID"} (208: already preheated)
  GET  /preheats/{id}, /api/v1/preheats/{id} -> {"ID", "status", "startTime", ...}
  GET  /healthy                             -> Dragonfly 2 manager health check
  POST /oapi/v1/jobs                        -> the job, "id" an integer
  GET  /oapi/v1/jobs/{id}                   -> the job: "state", "result"
  GET  /metrics                             -> Prometheus text (docs/METRICS.md)
Publish/subscribe (supernode/publications.py):
  POST /v1/publications                     -> publish an image or file (Bearer preheat token)
  GET  /v1/publications?subscriber=&after=&topics=&wait= -> a daemon's long-poll
  GET  /v1/subscriptions                    -> who subscribed to what, how far each has caught up
  POST /v1/cluster/publications             -> member to member: publications after a seq
"""
import ipaddress
from typing import Optional

from dfly import dashboard_page, metrics
from dfly.auth import check_ops_access
from dfly.errors import NotFound
from dfly.httpd import Request, Response, compile_routes, match_route, piece_number
from dfly.protocol import piecetoken, preheat, signing
from dfly.protocol.messages import PEER_SECRET_HEADER
from dfly.protocol.redirects import SOURCE_FETCH_HEADER
from dfly.protocol.signing import SignedCall
from dfly.supernode import dashboard
from dfly.supernode.preheat import Preheater
from dfly.supernode.publications import PubSub
from dfly.supernode.service import Supernode

_ROUTES = [
    ("GET", r"/healthz", "healthz"),
    ("GET", r"/v1/tasks", "list_tasks"),
    ("POST", r"/v1/tasks", "register"),
    ("GET", r"/v1/tasks/(?P<tid>[^/]+)", "status"),
    ("POST", r"/v1/tasks/(?P<tid>[^/]+)/schedule", "schedule"),
    ("POST", r"/v1/tasks/(?P<tid>[^/]+)/peers/(?P<peer>[^/]+)/heartbeat", "heartbeat"),
    ("DELETE", r"/v1/tasks/(?P<tid>[^/]+)/peers/(?P<peer>[^/]+)", "leave"),
    ("GET", r"/v1/tasks/(?P<tid>[^/]+)/pieces/(?P<num>[^/]+)", "piece"),
    ("GET", r"/v1/cluster", "cluster"),
    ("POST", r"/v1/cluster/ping", "ping"),
    ("GET", r"/v1/cluster/tasks/(?P<tid>[^/]+)", "replica"),
    ("PUT", r"/v1/cluster/tasks/(?P<tid>[^/]+)", "replica_pushed"),
    ("GET", r"/dashboard", "dashboard_page"),
    ("GET", r"/v1/dashboard", "dashboard_feed"),
    ("GET", r"(?:/api/v1)?/_ping", "healthz"),
    ("GET", r"/healthy", "healthz"),
    ("POST", r"(?:/api/v1)?/preheats", "preheat_v1"),
    ("GET", r"(?:/api/v1)?/preheats/(?P<job>[^/]+)", "preheat_v1_status"),
    ("POST", r"/oapi/v1/jobs", "preheat_v2"),
    ("GET", r"/oapi/v1/jobs/(?P<job>[^/]+)", "preheat_v2_status"),
    ("GET", r"/metrics", "metrics"),
    ("POST", r"/v1/publications", "publish"),
    ("GET", r"/v1/publications", "publications"),
    ("GET", r"/v1/subscriptions", "subscriptions"),
    ("POST", r"/v1/cluster/publications", "member_publications"),
]
ROUTES = compile_routes(_ROUTES)


class SupernodeApp:
    def __init__(self, supernode: Supernode, preheater: Optional[Preheater] = None,
                 ops_token: str = "", pubsub: Optional[PubSub] = None):
        self.supernode = supernode
        self.preheater = preheater or Preheater(supernode, "")
        self.ops_token = ops_token   # "" : the operations pages are open (dfly/auth.py)
        self.pubsub = pubsub

    def route(self, request: Request) -> Response:
        name, params = match_route(ROUTES, request)
        return getattr(self, name)(request, **params)

    def healthz(self, request: Request) -> Response:
        return Response.text("ok\n")

    def list_tasks(self, request: Request) -> Response:
        return Response.json({"tasks": self.supernode.task_list(_local(request)),
                              "sources_denied": self.supernode.sources_denied})

    def register(self, request: Request) -> Response:
        return Response.json(self.supernode.register(request.json(), request.client[0], _proof(request)))

    def status(self, request: Request, tid: str) -> Response:
        peer = request.query.get("peer", [""])[0]   # a peer of the task may see its URL
        return Response.json(self.supernode.task_status(tid, _local(request), peer, _proof(request)))

    def schedule(self, request: Request, tid: str) -> Response:
        return Response.json(self.supernode.schedule(tid, request.json(), _proof(request)))

    def heartbeat(self, request: Request, tid: str, peer: str) -> Response:
        return Response.json(self.supernode.heartbeat(tid, peer, _proof(request)))

    def leave(self, request: Request, tid: str, peer: str) -> Response:
        return Response.json(self.supernode.leave(tid, peer, _proof(request)))

    def piece(self, request: Request, tid: str, num: str) -> Response:
        peer = request.query.get("peer", [""])[0]   # who fetches it, when the peer says
        return Response(200, self.supernode.piece(tid, piece_number(num), peer, request.client[0],
                                                  _proof(request),
                                                  request.headers.get(piecetoken.HEADER, "")),
                        {"Content-Type": "application/octet-stream"})

    def cluster(self, request: Request) -> Response:
        return Response.json(self.supernode.cluster_status())

    def ping(self, request: Request) -> Response:
        return Response.json(self.supernode.member_pinged(_signed(request), request.json()))

    def replica(self, request: Request, tid: str) -> Response:
        return Response.json(self.supernode.replica_of(_signed(request), tid))

    def replica_pushed(self, request: Request, tid: str) -> Response:
        return Response.json(self.supernode.replica_pushed(_signed(request), tid, request.json()))

    # operations views: read-only ------------------------------------------------------
    def metrics(self, request: Request) -> Response:
        ops_view(request, self.ops_token)
        return metrics.http_response(self.supernode.metrics.registry)

    def dashboard_page(self, request: Request) -> Response:
        ops_view(request, self.ops_token)
        return Response(200, dashboard_page.SUPERNODE_PAGE.encode(), dict(dashboard_page.HEADERS))

    def dashboard_feed(self, request: Request) -> Response:
        ops_view(request, self.ops_token)
        q = request.query
        return Response.json(dashboard.feed(self.supernode, (q.get("task") or [""])[0][:64],
                                            dashboard.query_int(q, "offset", 0),
                                            dashboard.query_int(q, "limit", dashboard.DEFAULT_PAGE),
                                            authorised=_local(request)))

    def preheat_v1(self, request: Request) -> Response:
        self.preheater.check_auth(request.headers.get("Authorization", ""))
        views, new = self.preheater.submit(preheat.parse_v1(request.json()), request.client[0])
        done = not new and views["state"] == preheat.SUCCESS
        return Response.json({"ID": views["v1"]["ID"]}, 208 if done else 200)

    def preheat_v1_status(self, request: Request, job: str) -> Response:
        self.preheater.check_auth(request.headers.get("Authorization", ""))
        return Response.json(self.preheater.view(preheat.parse_job_id(job))["v1"])

    def preheat_v2(self, request: Request) -> Response:
        self.preheater.check_auth(request.headers.get("Authorization", ""))
        views, _ = self.preheater.submit(preheat.parse_v2(request.json()), request.client[0])
        return Response.json(views["v2"])

    def preheat_v2_status(self, request: Request, job: str) -> Response:
        self.preheater.check_auth(request.headers.get("Authorization", ""))
        return Response.json(self.preheater.view(preheat.parse_job_id(job))["v2"])

    # publish/subscribe ----------------------------------------------------------------
    def publish(self, request: Request) -> Response:
        return Response.json(self._pubsub().publish(request.json(), request.headers.get("Authorization", ""),
                                                    request.client[0]))

    def publications(self, request: Request) -> Response:
        return Response.json(self._pubsub().poll(request.query, request.client[0], _proof(request)))

    def subscriptions(self, request: Request) -> Response:
        ops_view(request, self.ops_token)   # read-only; closed with the other ops views
        return Response.json(self._pubsub().subscriptions())

    def member_publications(self, request: Request) -> Response:
        return Response.json(self._pubsub().member_publications(_signed(request), request.json()))

    def _pubsub(self) -> PubSub:
        if self.pubsub is None:
            raise NotFound("publish/subscribe is not wired on this listener")
        return self.pubsub


def ops_view(request: Request, ops_token: str) -> None:
    """Who may see the operations views (dashboard, metrics): the one place to check
    it. Open on the plain listener, as the issue asks, unless --ops-token-file
    (dfly/auth.py)."""
    check_ops_access(request.headers, ops_token)


def _signed(request: Request) -> SignedCall:
    return SignedCall(request.headers.get(signing.HEADER), request.method, request.path, request.body)


def _local(request: Request) -> bool:
    """Is the caller on the supernode's own host (its operator)? Task URLs are shown to it.
    Not a dfly process fetching a source it was told to (this supernode, made to fetch its
    own listing for a stranger)."""
    if request.headers.get(SOURCE_FETCH_HEADER) is not None:
        return False
    try:
        return ipaddress.ip_address(request.client[0]).is_loopback
    except ValueError:
        return False


def _proof(request: Request) -> str:
    """The peer secret a call carries (docs/PROTOCOL.md, "Who a peer is")."""
    return request.headers.get(PEER_SECRET_HEADER, "")
