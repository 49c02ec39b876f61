"""Source URLs as users paste them, made into what goes on the wire, once.

People paste URLs with raw spaces and non-ASCII names ('dir with space/ünï
cödé.bin'); http.client refuses them (InvalidURL) and a fetch thread that
meets one dies. So every URL is normalised where it enters (the CLI, the
Client, the supernode's and the daemon's request parsers), before a task id
is computed, and the same file typed two ways is one task. As curl does:
- in the path and query, each byte that is not printable ASCII (space,
  controls, non-ASCII as UTF-8) is percent-encoded; escapes already there are
  kept as typed, and a lone '%' becomes '%25' (the server would refuse it);
- a non-ASCII host name becomes its IDNA form (xn--...), scheme and host are
  lowercased, the scheme's default port is dropped, an empty path is '/';
- the fragment is dropped (it is never sent).
Unlike curl, a space in the query is '%20', not '+': every server reads it as
a space. ftp, ftps, s3 and file URLs (sources/) are normalised the same way;
ftp URLs may carry user:password@ (redact.py keeps it out of every listing
and log), file URLs are file:///ABSOLUTE/PATH. What cannot be made valid (a
scheme dfly does not read, no host, a host no DNS
name or IP literal looks like, a bad port, credentials in the URL, which
urllib cannot send) raises BadRequest. Idempotent: normalising twice changes
nothing.
"""
import re

from dfly.errors import BadRequest

SCHEMES = {"http": 80, "https": 443, "ftp": 21, "ftps": 21, "s3": None, "file": None}
WITH_CREDENTIALS = ("ftp", "ftps")   # user:password@ is how ftp URLs carry them
_URL = re.compile(r"\A([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?\Z", re.S)
_HOST = re.compile(r"\A[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*\.?\Z")
_HEX = "0123456789abcdefABCDEF"
_STRIP = "".join(chr(c) for c in range(0x21))   # what a paste leaves around a URL: C0 and space
MAX_HOST_LEN = 253


def normalize_url(text: str) -> str:
    """`text` as a valid http(s) URL (see the module's rules); BadRequest if it cannot be one."""
    match = _URL.match(text.strip(_STRIP))
    if match is None:
        raise BadRequest("not an absolute http or https URL: %r" % text[:200])
    scheme, authority, path, query, _ = match.groups()
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise BadRequest("source URL must be http, https, ftp, ftps, s3 or file: %r" % text[:200])
    if scheme == "file":
        return _file_url(authority, path, text)
    userinfo = ""
    if scheme in WITH_CREDENTIALS and "@" in authority:
        userinfo, _, authority = authority.rpartition("@")
        userinfo = _quote(userinfo, text) + "@"
    host, port = _split_authority(authority, text)
    if scheme == "s3" and (port is not None or not path.strip("/")):
        raise BadRequest("an s3 URL is s3://BUCKET/KEY: %r" % text[:200])
    netloc = userinfo + (host if port in (None, SCHEMES[scheme]) else "%s:%d" % (host, port))
    return "%s://%s%s%s" % (scheme, netloc, _quote(path or "/", text), _quote(query or "", text))


def _file_url(authority: str, path: str, text: str) -> str:
    """file:///absolute/path (or file://localhost/...): a local path, no query."""
    if authority not in ("", "localhost") or not path.startswith("/"):
        raise BadRequest("a file URL is file:///ABSOLUTE/PATH: %r" % text[:200])
    return "file://" + _quote(path, text)


def _split_authority(authority: str, text: str):
    """(host, port or None) of 'host[:port]'; user info is refused."""
    if "@" in authority:
        raise BadRequest("credentials in a URL are not supported (pass an Authorization "
                         "header instead)")
    if authority.startswith("["):
        literal, sep, rest = authority[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise BadRequest("bad IPv6 address in URL: %r" % text[:200])
        return "[%s]" % _ipv6(literal, text), _port(rest[1:], text) if rest else None
    host, sep, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    return _host(host, text), _port(port, text) if sep else None


def _ipv6(literal: str, text: str) -> str:
    if "%" in literal:   # a zone id: read differently by Python versions, and host-local anyway
        raise BadRequest("IPv6 zone ids are not supported in URLs: %r" % text[:200])
    # Imported here: most URLs name a host, and `dfly get` starts sooner without it.
    import ipaddress
    try:
        return str(ipaddress.IPv6Address(literal))
    except ValueError:
        raise BadRequest("bad IPv6 address in URL: %r" % text[:200])


def _host(host: str, text: str) -> str:
    host = host.lower()
    if host and not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise BadRequest("host name cannot be encoded (IDNA): %r" % text[:200])
    if len(host) > MAX_HOST_LEN or not _HOST.match(host):
        raise BadRequest("bad host name in URL: %r" % text[:200])
    return host


def _port(port: str, text: str):
    if port == "":
        return None
    if not port.isdigit() or not port.isascii() or not 0 < int(port) < 65536:
        raise BadRequest("bad port in URL: %r" % text[:200])
    return int(port)


def _quote(part: str, text: str) -> str:
    """Percent-encode what may not appear raw; keep %XX escapes as typed."""
    out = []
    for i, char in enumerate(part):
        if char == "%":
            escape = part[i + 1:i + 3]
            out.append("%" if len(escape) == 2 and all(c in _HEX for c in escape) else "%25")
        elif "!" <= char <= "~":
            out.append(char)
        else:
            try:
                raw = char.encode("utf-8")
            except UnicodeEncodeError:   # a lone surrogate, from JSON's \ud800
                raise BadRequest("URL is not valid text: %r" % text[:200])
            out.append("".join("%%%02X" % b for b in raw))
    return "".join(out)
