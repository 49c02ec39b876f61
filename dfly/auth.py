"""Who may see the operations pages (/metrics, /dashboard) of a listener.

They are read-only and show no secret, so by default they are open on the
plain listener, as a Prometheus exporter or Dragonfly's console is inside a
cluster. `--ops-token-file FILE` closes them: a request must then carry
`Authorization: Bearer <the file's first line>`. With mutual TLS required
(--tls-client-auth require) the listener's handshake already refused every
client without a certificate, these pages included; nothing more is checked here.
"""
import hmac
from typing import Optional

from dfly.errors import DflyError
from dfly.options import option


class Unauthorized(DflyError):
    """An operations page asked for without the ops token (--ops-token-file)."""
    http_status = 401


def ops_token_file_option():
    """The config field of every program with operations pages."""
    return option("", "file whose first line is the bearer token /metrics (and /dashboard) then "
                  "need; without it they are open (read-only, no secrets shown)", metavar="FILE")


def read_ops_token(path: str) -> str:
    """The token in `path` (its first line); "" for no path. ValueError (a clear
    one-line start-up error) when the file cannot be read or holds no token."""
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError("--ops-token-file %s cannot be read: %s" % (path, getattr(e, "strerror", None) or e))
    if not token:
        raise ValueError("--ops-token-file %s holds no token (its first line is empty)" % path)
    return token


def check_ops_access(headers, token: str) -> None:
    """The one gate of /metrics and /dashboard: open when `token` is "", else
    Unauthorized unless `headers` carry it as a bearer token."""
    if not token:
        return
    given = _bearer(headers.get("Authorization"))
    if given is None or not hmac.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("this page needs the ops token: Authorization: Bearer TOKEN "
                           "(--ops-token-file)")


def _bearer(value: Optional[str]) -> Optional[str]:
    if not value:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()
