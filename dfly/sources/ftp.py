"""ftp:// and ftps:// sources with ftplib: passive mode, binary transfers.
SIZE gives the size and MDTM the modification time; the two make the
validator (a strong ETag) and MDTM's time is Last-Modified. REST starts a
transfer at an offset, so a resumed fetch continues where it stopped. ftps is
explicit TLS (AUTH TLS, then a protected data channel), checked with the
source TLS options.

Credentials come from the URL (ftp://user:password@host/path) or, when it has
none, from the netrc entries the wiring read (--source-netrc, else ~/.netrc:
credentials.py), else anonymous. They go to the server and nowhere else: every
message here names the URL without them. The address the control connection reached is judged by the source
policy before logging in; the data connection goes to that same host (ftplib
ignores the address a PASV reply names).
"""
import ftplib
import socket
import ssl
import time
from calendar import timegm
from email.utils import formatdate
from typing import Dict, Optional, Tuple
from urllib.parse import unquote, urlsplit

from dfly.errors import SourceDenied, SourceError
from dfly.sources.answer import Stat, answer, http_error
from dfly.sources.config import SourceCredentials, SourceOptions, credentials_of


def open_url(url: str, headers: Dict[str, str], timeout_s: float, policy,
             options: SourceOptions):
    from dfly.protocol.redact import shown_url
    parts = urlsplit(url)
    shown = shown_url(url)
    if policy is not None:
        why = policy.check_url(url)
        if why is not None:
            raise SourceDenied("source %s denied by the supernode's source policy: %s"
                               % (shown, why), detail=why)
    path = unquote(parts.path)
    if not path or path.endswith("/"):
        raise SourceError("ftp URL names no file: %s" % shown)
    ftp = _connect(parts, timeout_s, policy, options, shown)
    try:
        ftp.voidcmd("TYPE I")
        stat = _stat(ftp, path, shown)
    except BaseException:
        _close(ftp)
        raise

    def open_at(offset: int):
        try:
            conn = ftp.transfercmd("RETR " + path, rest=offset or None)
        except ftplib.all_errors as e:
            raise _failed(shown, e)
        conn.settimeout(timeout_s)
        return _Data(ftp, conn)
    return answer(shown, stat, headers, open_at, lambda: _close(ftp))


def credentials(parts, known: SourceCredentials) -> Tuple[str, str]:
    """(user, password): the URL's own, else the netrc entry for the host (or its
    default entry), else anonymous."""
    if parts.username is not None:
        return unquote(parts.username), unquote(parts.password or "")
    if known.netrc_error:
        raise SourceError(known.netrc_error)
    entries = {host: (login, password) for host, login, password in known.netrc}
    found = entries.get(parts.hostname or "") or entries.get("default")
    if found:
        return found
    return "anonymous", "anonymous@"


def _connect(parts, timeout_s: float, policy, options: SourceOptions, shown: str) -> ftplib.FTP:
    secure = parts.scheme.lower() == "ftps"
    if secure:

        from dfly.sources.http import tls_context
        ftp = ftplib.FTP_TLS(context=tls_context(options) or ssl.create_default_context(),
                             timeout=timeout_s)
    else:
        ftp = ftplib.FTP(timeout=timeout_s)
    try:
        ftp.connect(parts.hostname or "", parts.port or 21)
        if policy is not None:
            why = policy.check_address(parts.hostname or "", ftp.sock.getpeername()[0])
            if why is not None:
                raise SourceDenied("source %s denied by the supernode's source policy" % shown,
                                   detail=why)
        user, password = credentials(parts, credentials_of(options))
        ftp.login(user, password)
        if secure:
            ftp.prot_p()
        ftp.set_pasv(True)
        return ftp
    except BaseException as e:
        _close(ftp)
        if isinstance(e, ssl.SSLCertVerificationError):
            from dfly.sources.http import untrusted
            raise untrusted(shown, e)
        if isinstance(e, ftplib.all_errors):
            raise _failed(shown, e)
        raise


def _stat(ftp: ftplib.FTP, path: str, shown: str) -> Stat:
    try:
        size = ftp.size(path)
        reply = ftp.sendcmd("MDTM " + path)
    except ftplib.all_errors as e:
        raise _failed(shown, e)
    if size is None or size < 0:
        raise SourceError("ftp server gave no SIZE for %s" % shown)
    mtime = _mdtm(reply)
    if mtime is None:
        raise SourceError("ftp server gave no usable MDTM for %s (%r)" % (shown, reply[:60]))
    return Stat(size, '"%d-%d"' % (mtime, size), formatdate(mtime, usegmt=True))


def _mdtm(reply: str) -> Optional[int]:
    """Seconds since the epoch from '213 YYYYMMDDHHMMSS[.fff]' (UTC)."""
    text = reply[4:].strip().split(".")[0]
    try:
        return timegm(time.strptime(text, "%Y%m%d%H%M%S"))
    except ValueError:
        return None


def _failed(shown: str, e: Exception):
    """ftplib's failure as http's: 530 denied, 550 not found, else unreachable."""
    text = str(e).strip()[:160]
    if text.startswith("530") or text.startswith("532"):
        return http_error(shown, 403, "Forbidden (denied: the ftp server refused the login)", {})
    if text.startswith("550"):
        return http_error(shown, 404, "Not Found", {})
    if isinstance(e, (socket.timeout, OSError)):
        return e
    return SourceError("ftp server failed for %s: %s" % (shown, text or type(e).__name__))


class _Data:
    """One RETR's data connection; closing it ends the transfer."""

    def __init__(self, ftp: ftplib.FTP, conn: socket.socket):
        self.ftp = ftp
        self.conn = conn
        self.file = conn.makefile("rb")

    def read(self, size: int = -1) -> bytes:
        return self.file.read(size)

    def close(self) -> None:
        self.file.close()
        self.conn.close()


def _close(ftp: ftplib.FTP) -> None:
    """Quit politely if the server answers at once; close either way."""
    try:
        ftp.close()
    except OSError:
        pass
