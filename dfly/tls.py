"""TLS and mutual TLS for every dfly listener and every client of one.

One switch for the whole cluster: a program given TLS options dials every
supernode and every peer with TLS, and serves TLS on its listeners when it has
a certificate; a program given none speaks plain HTTP, as before. So every
program of a cluster gets the same options (its own certificate, the cluster's
CA). Nothing on the wire says which to use: a peer that mixed both would only
find its connections refused.

The contexts are built here, once per program, from the options every config
dataclass shares (TLSOptions); servers and clients ask for the current one per
new connection. When the certificate, key or CA file changes (checked at most
once a second), or on SIGHUP (`reload`), new contexts are built: connections
opened since use the new certificate, open ones keep theirs. A change that does
not load (a key written before its certificate) keeps the old contexts until it
does.

A server does the handshake in the connection's own thread, with a timeout, so
a client that never finishes one holds a thread for at most that long and never
the accept loop. Plain HTTP sent to a TLS port gets a plain 400 saying so.
Clients check the server's certificate against the CA and the address they
dialled (or --tls-server-name, one name every certificate of the cluster holds).
A handshake the other side refused, or whose certificate we refused, is told
apart from a dead connection (`refusal`): it is a configuration error, not an
outage to wait out.
"""
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass, fields
from typing import Optional, Tuple

from dfly.options import option

log = logging.getLogger("dfly.tls")

HANDSHAKE_TIMEOUT_S = 10.0
CHECK_FILES_EVERY_S = 1.0
CLIENT_AUTH = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "require": ssl.CERT_REQUIRED}
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
REFUSED_DRAIN_BYTES = 64 << 10


@dataclass(frozen=True)
class TLSOptions:
    """The TLS settings every program shares: each config dataclass inherits these
    fields, so each has the same flags, config keys and SDK keyword arguments."""
    tls_cert: str = option("", "certificate this program shows (PEM, its chain after it); "
                           "its listeners then speak only TLS", metavar="FILE")
    tls_key: str = option("", "private key of --tls-cert (PEM)", metavar="FILE")
    tls_ca: str = option("", "CA certificates (PEM) that the certificates of supernodes and peers "
                         "must chain to; with it (or --tls-cert) every connection this program "
                         "makes is TLS (default with --tls-cert only: the system's CAs)",
                         metavar="FILE")
    tls_client_auth: str = option("none", "whether listeners ask clients for a certificate "
                                  "(mutual TLS; optional: checked if shown)",
                                  choices=("none", "optional", "require"))
    tls_min_version: str = option("1.2", "oldest TLS version accepted and offered",
                                  choices=("1.2", "1.3"))
    tls_ciphers: str = option("", "OpenSSL cipher string for TLS 1.2 (TLS 1.3 keeps OpenSSL's "
                              "suites: Python cannot set them)", metavar="CIPHERS")
    tls_server_name: str = option("", "name every supernode and peer certificate carries; checked "
                                  "instead of the address dialled", metavar="NAME")


def options_of(config) -> dict:
    """The TLS fields of any config dataclass, to build another program's config from."""
    return {f.name: getattr(config, f.name) for f in fields(TLSOptions)}


def enabled(config) -> bool:
    return bool(getattr(config, "tls_cert", "") or getattr(config, "tls_ca", ""))


def check(config) -> None:
    """ValueError (exit 2, naming the flag) for TLS settings that cannot work."""
    if config.tls_client_auth not in CLIENT_AUTH:
        raise ValueError("bad value for --tls-client-auth: %r (none, optional or require)"
                         % config.tls_client_auth)
    if config.tls_min_version not in VERSIONS:
        raise ValueError("bad value for --tls-min-version: %r (1.2 or 1.3)" % config.tls_min_version)
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    if config.tls_client_auth != "none" and not config.tls_ca:
        raise ValueError("--tls-client-auth %s needs --tls-ca (the CA client certificates "
                         "must chain to)" % config.tls_client_auth)


class TLS:
    """A program's TLS contexts, rebuilt when their files change; `from_config`
    gives None when the config has no TLS options (plain HTTP)."""

    def __init__(self, config, clock=time.monotonic, handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S):
        check(config)
        self.options = TLSOptions(**options_of(config))
        self.clock = clock
        self.handshake_timeout_s = handshake_timeout_s
        self._lock = threading.RLock()   # a SIGHUP may come while this thread reloads
        self._checked_at = clock()
        self._stamps = self._file_stamps()
        self._server, self._client = self._build()   # ValueError: the files do not load
        self.reloads = 0

    @classmethod
    def from_config(cls, config) -> Optional["TLS"]:
        return cls(config) if enabled(config) else None

    @property
    def serves(self) -> bool:
        """Do our listeners speak TLS (we have a certificate)?"""
        return bool(self.options.tls_cert)

    # contexts ------------------------------------------------------------------------
    def server_context(self) -> ssl.SSLContext:
        self._check_files()
        return self._server

    def client_context(self) -> ssl.SSLContext:
        self._check_files()
        return self._client

    def reload(self) -> bool:
        """Build the contexts again from the files now (SIGHUP); False, with a
        logged reason, when they do not load (the old ones stay in use)."""
        with self._lock:
            stamps = self._file_stamps()
            try:
                self._server, self._client = self._build()
            except ValueError as e:
                log.warning("TLS certificates not reloaded: %s", e)
                return False
            self._stamps = stamps
            self.reloads += 1
        log.info("TLS certificate and key reloaded from %s", self.options.tls_cert or self.options.tls_ca)
        return True

    def _check_files(self) -> None:
        now = self.clock()
        if now - self._checked_at < CHECK_FILES_EVERY_S:
            return
        self._checked_at = now
        stamps = self._file_stamps()
        if stamps != self._stamps:
            if not self.reload():
                self._stamps = stamps   # tried: try again once the files change again
            # (a half-written pair changes again when the other half is written)

    def _file_stamps(self) -> Tuple:
        o = self.options
        return tuple(_stamp(p) for p in (o.tls_cert, o.tls_key, o.tls_ca))

    def _build(self) -> Tuple[Optional[ssl.SSLContext], ssl.SSLContext]:
        o = self.options
        server = None
        if o.tls_cert:
            server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._common(server)
            server.verify_mode = CLIENT_AUTH[o.tls_client_auth]
            if hasattr(server, "num_tickets"):   # no client resumes a session: send no tickets
                server.num_tickets = 0
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)   # checks certificate and name
        self._common(client)
        if not o.tls_ca:
            client.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return server, client

    def _common(self, context: ssl.SSLContext) -> None:
        o = self.options
        context.minimum_version = VERSIONS[o.tls_min_version]
        if o.tls_ciphers:
            try:
                context.set_ciphers(o.tls_ciphers)
            except ssl.SSLError as e:
                raise ValueError("bad value for --tls-ciphers: %r (%s)" % (o.tls_ciphers, _reason(e)))
        if o.tls_cert:
            try:
                context.load_cert_chain(o.tls_cert, o.tls_key)
            except (OSError, ssl.SSLError) as e:
                raise ValueError("cannot load --tls-cert %s / --tls-key %s: %s"
                                 % (o.tls_cert, o.tls_key, _reason(e)))
        if o.tls_ca:
            try:
                context.load_verify_locations(cafile=o.tls_ca)
            except (OSError, ssl.SSLError) as e:
                raise ValueError("cannot load --tls-ca %s: %s" % (o.tls_ca, _reason(e)))

    # connections ---------------------------------------------------------------------
    def connection(self, host: str, port: int, timeout: float) -> http.client.HTTPConnection:
        """An HTTP connection that does a checked TLS handshake when it connects."""
        return TLSConnection(host, port, timeout, self.client_context(),
                             self.options.tls_server_name or host)

    def accept(self, sock: socket.socket, client: str) -> Optional[ssl.SSLSocket]:
        """The TLS side of a connection a listener accepted; None (and `sock`
        closed) when the handshake failed or the client speaks plain HTTP."""
        sock.settimeout(self.handshake_timeout_s)
        try:
            first = sock.recv(1, socket.MSG_PEEK)
            if not first:   # closed before saying anything (a port scan, a health check)
                sock.close()
                return None
            if first != b"\x16":   # not a TLS handshake record: plain HTTP, most likely
                _answer_plain(sock)
                sock.close()
                log.info("plain HTTP from %s to a TLS port refused", client)
                return None
            conn = self.server_context().wrap_socket(sock, server_side=True,
                                                     do_handshake_on_connect=False)
        except OSError:
            sock.close()
            return None
        try:
            conn.do_handshake()
            return conn
        except (OSError, ValueError) as e:
            log.warning("TLS handshake with %s failed: %s", client, _reason(e))
            _close_refused(conn)
            return None


class TLSConnection(http.client.HTTPConnection):
    """http.client's connection with a TLS handshake checked against `server_name`."""
    default_port = 443

    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext,
                 server_name: str):
        super().__init__(host, port, timeout=timeout)
        self._context, self._server_name = context, server_name

    def connect(self) -> None:
        super().connect()
        try:
            self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_name)
        except BaseException:
            self.sock = None   # closed by wrap_socket
            raise


def http_connection(tls: Optional[TLS], host: str, port: int,
                    timeout: float) -> http.client.HTTPConnection:
    """The connection every dfly client makes to a supernode or a peer."""
    if tls is None:
        return http.client.HTTPConnection(host, port, timeout=timeout)
    return tls.connection(host, port, timeout)


_ALERTS = {
    "CERTIFICATE_REQUIRED": "it requires a client certificate (--tls-cert)",
    "UNKNOWN_CA": "it does not trust our certificate (from another CA?)",
    "CERTIFICATE_EXPIRED": "it refused our certificate: expired",
    "BAD_CERTIFICATE": "it refused our certificate",
    "CERTIFICATE_UNKNOWN": "it refused our certificate",
    "UNSUPPORTED_CERTIFICATE": "it refused our certificate",
    "PROTOCOL_VERSION": "no TLS version in common (--tls-min-version)",
    "HANDSHAKE_FAILURE": "no cipher or TLS version in common (--tls-ciphers, --tls-min-version)",
}
_LOCAL = {
    "WRONG_VERSION_NUMBER": "it does not speak TLS",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common (--tls-min-version)",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version in common (--tls-min-version)",
    "NO_SHARED_CIPHER": "no cipher in common (--tls-ciphers)",
    "NO_CIPHERS_AVAILABLE": "no cipher in common (--tls-ciphers)",
}


def refusal(error: BaseException, tls: Optional[TLS] = None) -> Optional[str]:
    """Why a TLS handshake was refused (by either side), in a few words; None when
    `error` is not a refusal (a connection reset, a timeout, a server gone).
    `tls`: ours, to tell a TLS 1.2 server's refusal of no certificate (it names
    no reason) from one of ciphers or versions."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return "its certificate is not accepted: %s" % (error.verify_message or _reason(error))
    if not isinstance(error, ssl.SSLError) or isinstance(error, (ssl.SSLEOFError,
                                                                 ssl.SSLZeroReturnError)):
        return None
    reason = getattr(error, "reason", None) or ""
    if "HANDSHAKE_FAILURE" in reason and tls is not None and not tls.options.tls_cert:
        return _ALERTS["CERTIFICATE_REQUIRED"]
    for key, text in _ALERTS.items():
        if "ALERT" in reason and key in reason:
            return text
    if "ALERT" in reason:
        return "it refused the handshake (%s)" % reason.lower().replace("_", " ")
    return _LOCAL.get(reason)


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return error.verify_message
    if isinstance(error, ssl.SSLError) and getattr(error, "reason", None):
        return error.reason.lower().replace("_", " ")
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _stamp(path: str):
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _answer_plain(sock: socket.socket) -> None:
    body = json.dumps({"error": "this port speaks TLS only: dial it with TLS (--tls-ca, --tls-cert)",
                       "kind": "TLSRequired"}).encode() + b"\n"
    try:
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        sock.shutdown(socket.SHUT_WR)
        _drain(sock)
    except OSError:
        pass


def _close_refused(conn: ssl.SSLSocket) -> None:
    """Close a connection whose handshake failed so that the client reads our alert:
    what it sent meanwhile (a TLS 1.3 client sends its request at once) is read
    first, since closing with unread bytes resets the connection, alert and all."""
    try:
        raw = socket.socket(fileno=conn.detach())
    except OSError:
        conn.close()
        return
    try:
        raw.shutdown(socket.SHUT_WR)
        _drain(raw)
    except OSError:
        pass
    finally:
        raw.close()


def _drain(sock: socket.socket) -> None:
    sock.settimeout(1.0)
    got = 0
    while got < REFUSED_DRAIN_BYTES:
        data = sock.recv(16384)
        if not data:
            return
        got += len(data)
