"""Following a source's redirects without leaking credentials, under a source policy.

urllib copies every request header onto a redirected request, wherever it
points. Registries redirect blob downloads to storage on other hosts (S3 and
the like), which must not receive the client's Authorization or Cookie (and
reject requests that carry both a header and a signed URL). So a redirect to
another host drops them; a redirect within the same host keeps them. A
redirect goes to http or https only (urllib would also follow one to ftp://).

With a SourcePolicy (the supernode's), every URL, the first and each
redirect's, is judged before it is opened, and every connection is judged by
the address it reached (after DNS) before anything is sent on it.

Every source request (and each redirect of it) carries SOURCE_FETCH_HEADER: a
dfly listener trusts callers on its own host as its operator, and must not
trust a dfly process that was merely told to fetch from it (SSRF read-back).
"""
import urllib.error
import urllib.request
from typing import Optional
from urllib.parse import urlsplit

from dfly.errors import SourceDenied
from dfly.protocol.redact import shown_url
from dfly.protocol.sourcepolicy import SourcePolicy

CREDENTIAL_HEADERS = ("Authorization", "Cookie", "Proxy-Authorization")
SOURCE_FETCH_HEADER = "X-Dfly-Source-Fetch"
# Where a redirect may lead: never to ftp:// or file://, whatever else dfly reads.
REDIRECT_SCHEMES = ("http", "https")


def _origin(url: str):
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


class SameHostCredentials(urllib.request.HTTPRedirectHandler):
    policy: Optional[SourcePolicy] = None

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if self.policy is not None:
            if urlsplit(newurl).scheme.lower() not in REDIRECT_SCHEMES:
                why = "a redirect leads to http or https only"
                raise SourceDenied("a redirect to source %s denied by the supernode's source "
                                   "policy: %s" % (shown_url(newurl), why), detail=why)
            _check_url(self.policy, newurl, "a redirect to")
        if urlsplit(newurl).scheme.lower() not in REDIRECT_SCHEMES:
            raise urllib.error.HTTPError(newurl, code, "redirect to a scheme dfly does not fetch",
                                         headers, fp)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            for name in CREDENTIAL_HEADERS:
                new.remove_header(name)
                new.remove_header(name.capitalize())
        return new


class _Checked:
    """Mixin for urllib's HTTP(S)Handler: each connection it makes is judged by the
    peer address it reached, before the request (or a TLS hello) is sent."""
    policy: SourcePolicy

    def do_open(self, http_class, req, **kwargs):
        policy = self.policy

        def connection(host, **conn_kwargs):
            conn = http_class(host, **conn_kwargs)
            connect = conn._create_connection   # socket.create_connection, in 3.8..3.13

            def checked(address, *args, **more):
                sock = connect(address, *args, **more)
                try:
                    peer = sock.getpeername()[0]
                except OSError:
                    sock.close()
                    raise
                why = policy.check_address(str(address[0]), peer)
                if why is not None:
                    sock.close()
                    # The client is not told which address: that would map internal DNS.
                    raise SourceDenied("source %s denied by the supernode's source policy"
                                       % shown_url(req.full_url), detail=why)
                return sock
            conn._create_connection = checked
            return conn
        return super().do_open(connection, req, **kwargs)


class _CheckedHTTP(_Checked, urllib.request.HTTPHandler):
    pass


class _CheckedHTTPS(_Checked, urllib.request.HTTPSHandler):
    pass


def _check_url(policy: SourcePolicy, url: str, what: str = "") -> None:
    why = policy.check_url(url)
    if why is not None:
        # Judged on what the client sent alone: the reason may be shown.
        raise SourceDenied("%ssource %s denied by the supernode's source policy: %s"
                           % (what + " " if what else "", shown_url(url), why), detail=why)


_OPENER = urllib.request.build_opener(SameHostCredentials)


def _opener(policy: Optional[SourcePolicy], context=None):
    redirect = SameHostCredentials()
    handlers = [redirect]
    if policy is not None:
        http, https = _CheckedHTTP(), _CheckedHTTPS(context=context)
        redirect.policy = http.policy = https.policy = policy
        handlers += [http, https]
    else:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    # Through a proxy (http_proxy), the address judged is the proxy's (README says so).
    return urllib.request.build_opener(*handlers)


def urlopen(request: urllib.request.Request, timeout: float, policy: Optional[SourcePolicy] = None,
            context=None):
    """urllib.request.urlopen, but credentials never follow a redirect to another host;
    with `policy`, every URL and every connection is judged by it (SourceDenied);
    `context`: the TLS context https sources are checked with (None: the system's)."""
    request.add_header(SOURCE_FETCH_HEADER, "1")   # last: no caller's header replaces it
    if policy is None and context is None:
        return _OPENER.open(request, timeout=timeout)
    if policy is not None:
        _check_url(policy, request.full_url)
    return _opener(policy, context).open(request, timeout=timeout)
