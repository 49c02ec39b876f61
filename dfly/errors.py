"""Typed failures, each with the exit code the CLI returns for it.

Servers map them to HTTP statuses in one place (httpd.py); the CLI maps them to
exit codes in one place (cli.py). Messages are written for the operator.
"""
import errno
import socket


class DflyError(Exception):
    exit_code = 1
    http_status = 500


class BadRequest(DflyError):
    """What a client sent is malformed or out of range."""
    exit_code = 2
    http_status = 400


class VersionMismatch(BadRequest):
    """The other side speaks another version of dfly's protocol (docs/PROTOCOL.md):
    upgrade one of them. Never a download of pieces the two would read differently."""


class CannotListen(DflyError):
    """A listen address this host cannot use: taken, not its own, or a family it lacks."""
    exit_code = 2


class Forbidden(DflyError):
    """The caller may not do this (a supernode of another cluster, say)."""
    http_status = 403


class NotFound(DflyError):
    http_status = 404


class Gone(DflyError):
    """The supernode does not know this peer (any more): register again."""
    http_status = 410


class TooManyRequests(DflyError):
    """The caller asked for more than a supernode gives one client (new tasks per minute)."""
    http_status = 429


class SourceError(DflyError):
    """The origin could not be read: unreachable, 4xx/5xx, cut short."""
    exit_code = 3
    http_status = 502


class SourceChanged(SourceError):
    """The source's content changed under a download (or under pieces held to seed)."""


class SourceDenied(DflyError):
    """The supernode's source policy forbids this source (--allow-source / --deny-source).
    `detail` is for the supernode's log: it may name addresses the client must not learn."""
    exit_code = 9
    http_status = 403

    def __init__(self, message: str = "", detail: str = ""):
        super().__init__(message)
        self.detail = detail


class DigestMismatch(DflyError):
    """The content does not match the digest the user expects."""
    exit_code = 4
    http_status = 502


class DownloadTimeout(DflyError):
    exit_code = 5
    http_status = 504


class Cancelled(DflyError):
    """The caller stopped the download (a stream closed early)."""


class DataDirInUse(DflyError):
    """Another live process (a supernode, a daemon, `dfly scrub`) works in this data dir."""
    exit_code = 2


class LocalIOError(DflyError):
    """The local disk refused: unwritable path, disk full."""
    exit_code = 6
    http_status = 507


class TLSRefused(DflyError):
    """A TLS handshake with a supernode failed: it refused our certificate (none,
    expired, of another CA) or we refused its own, or no TLS version is common.
    A setting to fix, not an outage: no other supernode is tried, no source."""
    exit_code = 10
    http_status = 502


class P2PUnavailable(DflyError):
    """No supernode answered and going back to the source was not allowed."""
    exit_code = 7
    http_status = 503


_NO_ROUTE = (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN)


def unreachable(error: BaseException) -> bool:
    """Could no connection be made at all (refused, timed out, no route, name unknown)?
    Outage mode serves cached content then; never when a source answered, however badly."""
    return (isinstance(error, (ConnectionRefusedError, socket.timeout, TimeoutError, socket.gaierror))
            or (isinstance(error, OSError) and error.errno in _NO_ROUTE))


EXIT_CODES = {
    0: "success",
    1: "other error",
    2: "usage error, bad request or a listen address this host cannot use",
    3: "source error (origin unreachable, HTTP error, cut short)",
    4: "digest mismatch",
    5: "timeout",
    6: "local I/O error (unwritable path, disk full)",
    7: "no supernode reachable and --no-back-source given",
    8: "dfly scrub found damage (and repaired what it could)",
    9: "source denied by the supernode's source policy",
    10: "TLS handshake with a supernode refused (certificate missing, expired or of another "
        "CA, name or TLS version)",
}
