"""The supernode's client: what peers, the SDK and the tests use to talk to it.

One keep-alive HTTP connection per client object (a download's coordinator
thread owns one). Connection failures raise SupernodeDown; error replies raise
the typed error the supernode named, so callers handle `Gone` (register again)
and `SourceError` without looking at HTTP. With a `tls` (dfly/tls.py) the
connection is TLS; a refused handshake raises TLSRefused, not SupernodeDown.
"""
import http.client
import json
import socket
import ssl
import threading
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import urlencode

from dfly import errors
from dfly.protocol import piecetoken
from dfly.protocol.address import loopback_for, parse_address
from dfly.protocol.messages import (
    PEER_SECRET_HEADER,
    HeartbeatReply,
    RegisterRequest,
    ScheduleRequest,
    TaskState,
    check_version,
    stale,
)
from dfly.protocol.signing import HEADER as CLUSTER_HEADER
from dfly.protocol.task import TASK_ID
from dfly.tls import TLS, http_connection, refusal

Signer = Callable[[str, str, bytes], str]   # (method, path, body) -> X-Dfly-Cluster value

DEFAULT_PORT = 8002
MAX_REDIRECTS = 4


class SupernodeDown(errors.DflyError):
    """The supernode did not answer (refused, reset, timed out)."""


class SupernodeSlow(SupernodeDown):
    """The supernode's answer did not come in time. Unlike a refusal, this is what a
    live supernode looks like from behind links full of the swarm's pieces, where a
    reply can sit in a queue or TCP back off for longer than any fixed timeout."""


_KINDS = {"Forbidden": errors.Forbidden, "BadRequest": errors.BadRequest,
          "NotFound": errors.NotFound, "Gone": errors.Gone, "MethodNotAllowed": errors.BadRequest,
          "SourceError": errors.SourceError, "SourceDenied": errors.SourceDenied,
          "DigestMismatch": errors.DigestMismatch, "TLSRequired": errors.TLSRefused,
          "VersionMismatch": errors.VersionMismatch}


class PeerSecrets:
    """The secrets supernodes gave one peer id (supernode address -> secret), shared
    by every client object of that peer and handed to its seeder: each later call
    in the peer's name carries the secret of the supernode it goes to."""

    def __init__(self, known: Optional[Dict[str, str]] = None):
        self._by_address: Dict[str, str] = dict(known or {})
        # Held by a first registration at a supernode, so that two downloads of the
        # same peer do not both register without a secret (the second is refused).
        self.first_registration = threading.Lock()

    def get(self, address: str) -> str:
        return self._by_address.get(address, "")

    def put(self, address: str, secret: str) -> None:
        self._by_address[address] = secret

    def to_json(self) -> Dict[str, str]:
        return dict(self._by_address)

    def keys(self) -> List[bytes]:
        """The keys piece tokens for this peer are minted with (one per supernode)."""
        return [piecetoken.key_of(s) for s in list(self._by_address.values())]


class SupernodeClient:
    def __init__(self, address: str, timeout_s: float = 15.0, tls: Optional[TLS] = None,
                 secrets: Optional[PeerSecrets] = None):
        self.address = address
        self.tls = tls
        self.host, self.port = _host_port(address)
        self.timeout_s = timeout_s
        self.secrets = secrets if secrets is not None else PeerSecrets()
        self._conn: Optional[http.client.HTTPConnection] = None
        self.server_timing: Optional[str] = None   # the last reply's Server-Timing header

    def clone(self) -> "SupernodeClient":
        """Another client (its own connection) to the supernode this one talks to now."""
        return SupernodeClient(self.address, self.timeout_s, self.tls, self.secrets)

    @property
    def peer_secret(self) -> str:
        """What proves our peer id to the supernode this client talks to now ("" before registering)."""
        return self.secrets.get(self.address)

    # calls -------------------------------------------------------------------------
    def register(self, request: RegisterRequest) -> Tuple[str, TaskState]:
        """Register for a URL; returns (task id, state). In a cluster, the member
        asked may name the task's owner instead: this client then moves there."""
        for _ in range(MAX_REDIRECTS):
            if self.peer_secret:
                body = self._register_once(request)
            else:
                with self.secrets.first_registration:
                    body = self._register_once(request)
            if not body.get("redirect"):
                task_id = body.get("task_id")
                if not isinstance(task_id, str) or not TASK_ID.match(task_id):
                    raise SupernodeDown("supernode %s sent no task id" % self.address)
                state = self._state(body)
                # A reply that is one, from a supernode of another protocol version:
                # not down, and not to be failed over from (every member is of one version).
                check_version(body.get("version"), "supernode %s" % self.address)
                return task_id, state
            self.close()
            self.address = body["redirect"]
            self.host, self.port = _host_port(self.address)
        raise SupernodeDown("supernodes kept redirecting (last to %s)" % self.address)

    def _register_once(self, request: RegisterRequest) -> dict:
        body = self._call("POST", "/v1/tasks", request.to_json(), headers=self._proof())
        if isinstance(body.get("peer_secret"), str) and body["peer_secret"]:
            self.secrets.put(self.address, body["peer_secret"])
        return body

    def schedule(self, task_id: str, request: ScheduleRequest) -> TaskState:
        timeout = self.timeout_s + request.wait_s
        return self._state(self._call("POST", "/v1/tasks/%s/schedule" % task_id,
                                      request.to_json(), timeout, headers=self._proof()))

    def _state(self, body: dict) -> TaskState:
        try:
            return TaskState.parse(body)
        except errors.BadRequest as e:   # not a supernode we can work with: as if it were down
            raise SupernodeDown("supernode %s sent a bad reply: %s" % (self.address, e))

    def heartbeat(self, task_id: str, peer_id: str) -> HeartbeatReply:
        """The peer still serves `task_id`; the reply has the task's content version ("" unknown)
        and the pieces others discarded from this peer, for it to check."""
        return HeartbeatReply.parse(self._call("POST", "/v1/tasks/%s/peers/%s/heartbeat"
                                               % (task_id, peer_id), {}, headers=self._proof()))

    def leave(self, task_id: str, peer_id: str) -> None:
        self._call("DELETE", "/v1/tasks/%s/peers/%s" % (task_id, peer_id), headers=self._proof())

    def leave_quietly(self, task_id: str, peer_id: str) -> None:
        """leave_quietly() below, to the supernode this client talks to now."""
        leave_quietly(self.address, task_id, peer_id, self.tls, self.secrets)

    def _proof(self) -> Dict[str, str]:
        secret = self.peer_secret
        return {PEER_SECRET_HEADER: secret} if secret else {}

    # between cluster members -----------------------------------------------------------
    def ping(self, me: str, active: List[str], sign: Signer) -> dict:
        """Tell a member we live and which tasks we serve; its reply says the same of it."""
        return self._call("POST", "/v1/cluster/ping", {"member": me, "active": active}, sign=sign)

    def replica(self, task_id: str, sign: Signer) -> dict:
        """A task's metadata (URL, geometry, piece digests) from the member serving it."""
        return self._call("GET", "/v1/cluster/tasks/%s" % task_id, sign=sign)

    def put_replica(self, task_id: str, replica: dict, sign: Signer) -> None:
        """Copy a task's metadata (with its newest piece digest) to a member."""
        self._call("PUT", "/v1/cluster/tasks/%s" % task_id, replica, sign=sign)

    def cluster(self) -> dict:
        return self._call("GET", "/v1/cluster")

    def tasks(self) -> List[dict]:
        return self.listing()["tasks"]

    def listing(self) -> dict:
        """GET /v1/tasks whole: the tasks and the supernode's counters."""
        return self._call("GET", "/v1/tasks")

    def task(self, task_id: str) -> dict:
        return self._call("GET", "/v1/tasks/%s" % task_id)

    def dashboard(self, task_id: str = "", offset: int = 0, limit: int = 50) -> dict:
        """GET /v1/dashboard: the dashboard's feed (one task's peers a page at a time)."""
        return self._call("GET", "/v1/dashboard?%s" % urlencode({"task": task_id, "offset": offset,
                                                                  "limit": limit}))

    def local_host(self) -> Optional[str]:
        """The local address this host used to reach the supernode (what peers can reach)."""
        conn = self._connection()
        try:
            if conn.sock is None:
                conn.connect()
            return conn.sock.getsockname()[0]
        except ssl.SSLError as e:
            self._refused(e)
            raise SupernodeDown("supernode %s unreachable: %s" % (self.address, e))
        except OSError as e:
            self.close()
            raise SupernodeDown("supernode %s unreachable: %s" % (self.address, e))

    def preheat(self, body: dict, token: str) -> dict:
        """Start a preheat job (Dragonfly 2's job API, as Harbor 2.12+ calls it): the job."""
        return self._call("POST", "/oapi/v1/jobs", body, headers=_bearer(token))

    def preheat_job(self, job_id: int, token: str) -> dict:
        return self._call("GET", "/oapi/v1/jobs/%d" % job_id, headers=_bearer(token))

    # publish/subscribe (protocol/publications.py) -------------------------------------
    def publish(self, body: dict, token: str) -> dict:
        """Publish an image or a file to the subscribed daemons (the preheat token): its job."""
        return self._call("POST", "/v1/publications", body, headers=_bearer(token))

    def publications(self, subscriber: str, after: int, patterns: List[str], wait_s: float) -> dict:
        """Long-poll for the publications after `after` that `patterns` take; the peer
        secret proves `subscriber` (a first poll gets one, as a first registration does)."""
        query = urlencode({"subscriber": subscriber, "after": after, "topics": ",".join(patterns),
                           "wait": "%.1f" % wait_s})
        if self.peer_secret:
            body = self._call("GET", "/v1/publications?" + query, None, self.timeout_s + wait_s,
                              headers=self._proof())
        else:
            with self.secrets.first_registration:
                body = self._call("GET", "/v1/publications?" + query, None, self.timeout_s + wait_s,
                                  headers=self._proof())
        if isinstance(body.get("peer_secret"), str) and body["peer_secret"]:
            self.secrets.put(self.address, body["peer_secret"])
        return body

    def subscriptions(self, token: str = "") -> dict:
        return self._call("GET", "/v1/subscriptions", headers=_bearer(token) if token else None)

    def member_publications(self, after: int, sign: Signer) -> dict:
        """Member to member: this member's publications after `after` (signed)."""
        return self._call("POST", "/v1/cluster/publications", {"after": after}, sign=sign)

    def interrupt(self) -> None:
        """From another thread: end the call in flight now (a long poll, at shutdown)."""
        conn = self._conn
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # transport -----------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http_connection(self.tls, self.host, self.port, self.timeout_s)
        return self._conn

    def _refused(self, error: ssl.SSLError) -> None:
        """TLSRefused when `error` is a refused handshake; else the caller goes on."""
        why = refusal(error, self.tls)
        self.close()
        if why is not None:
            raise errors.TLSRefused("TLS handshake with supernode %s failed: %s"
                                    % (self.address, why))

    def _call(self, method: str, path: str, body: Optional[dict] = None,
              timeout: Optional[float] = None, headers: Optional[dict] = None,
              sign: Optional[Signer] = None):
        payload = json.dumps(body).encode() if body is not None else None
        headers = dict(headers or {})
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):   # a keep-alive connection the server closed gets one retry
            if sign is not None:   # signed afresh: the first attempt's nonce may have been seen
                headers[CLUSTER_HEADER] = sign(method, path, payload or b"")
            conn = self._connection()
            fresh = conn.sock is None   # (before the call: http.client drops a socket that broke)
            try:
                if fresh:
                    conn.connect()
                conn.sock.settimeout(timeout or self.timeout_s)
                conn.request(method, path, payload, headers)
                response = conn.getresponse()
                data = response.read()
                self.server_timing = response.getheader("Server-Timing")
                break
            except (http.client.HTTPException, OSError) as e:
                if isinstance(e, ssl.SSLError):
                    self._refused(e)
                self.close()
                if isinstance(e, socket.timeout):
                    raise SupernodeSlow("supernode %s unreachable: %s" % (self.address, e))
                if attempt == 2 or isinstance(e, ConnectionRefusedError) or fresh:
                    raise SupernodeDown("supernode %s unreachable: %s" % (self.address, e))
        try:
            value = json.loads(data.decode("utf-8")) if data else {}
        except (ValueError, RecursionError):
            value = {"error": data[:200].decode("latin-1")}
        if not isinstance(value, dict):
            if response.status >= 500:
                raise SupernodeDown("supernode %s answered %d" % (self.address, response.status))
            value = {"error": "a reply that is not a JSON object"}
        if response.status >= 400:
            name = value.get("kind")
            kind = _KINDS.get(name, errors.DflyError) if isinstance(name, str) else errors.DflyError
            if response.status in (429, 503):   # busy: another supernode, or the source
                kind = SupernodeDown
            raise kind("supernode: %s" % value.get("error", response.status))
        return value


def _bearer(token: str) -> dict:
    return {"Authorization": "Bearer " + token}


def _host_port(address: str):
    """Where to connect for `address` (a supernode's own wildcard listen address means
    this host); SupernodeDown when it is malformed (a bad redirect)."""
    try:
        host, port = parse_address(address, DEFAULT_PORT)
    except ValueError as e:
        raise SupernodeDown("bad supernode address: %s" % e)
    return loopback_for(host), port


def announce_holder(addresses: List[str], request: RegisterRequest, piece_count: int,
                    timeout_s: float = 5.0, content_version: str = "",
                    held: Optional[List[int]] = None, tls: Optional[TLS] = None,
                    secrets: Optional[PeerSecrets] = None) -> Optional[str]:
    """Register as holder of every piece of a finished task (or of `held`) at the
    first supernode that takes it (after a restart, or when the one we used died);
    returns the address that did (the task's owner, after redirects), or None.
    SourceChanged when the task's content is no longer `content_version` (the
    pieces are stale)."""
    for address in addresses:
        client = SupernodeClient(address, timeout_s, tls, secrets)
        try:
            task_id, state = client.register(request)
            if not stale(content_version, state.content_version):
                done = list(range(piece_count)) if held is None else sorted(held)
                state = client.schedule(task_id, ScheduleRequest(
                    request.peer_id, done=done, want=0, content_version=content_version or None))
            if stale(content_version, state.content_version):
                client.leave(task_id, request.peer_id)
                raise errors.SourceChanged("the source of task %s changed (content version %s, "
                                           "now %s)" % (task_id[:12], content_version,
                                                        state.content_version))
            return client.address
        except errors.SourceChanged:
            raise
        except errors.DflyError:
            continue
        finally:
            client.close()
    return None


def leave_quietly(address: str, task_id: str, peer_id: str, tls: Optional[TLS] = None,
                  secrets: Optional[PeerSecrets] = None) -> None:
    """Tell the supernode at `address` this peer left `task_id`; best effort."""
    client = SupernodeClient(address, timeout_s=5, tls=tls, secrets=secrets)
    try:
        client.leave(task_id, peer_id)
    except errors.DflyError:
        pass
    finally:
        client.close()
