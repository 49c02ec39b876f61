"""Following a source's redirects without leaking credentials.

urllib copies every request header onto a redirected request, wherever it
points. Registries redirect blob downloads to storage on other hosts (S3 and
the like), which must not receive the client's Authorization or Cookie (and
reject requests that carry both a header and a signed URL). So a redirect to
another host drops them; a redirect within the same host keeps them.
"""
import urllib.request
from urllib.parse import urlsplit

CREDENTIAL_HEADERS = ("Authorization", "Cookie", "Proxy-Authorization")


def _origin(url: str):
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


class SameHostCredentials(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            for name in CREDENTIAL_HEADERS:
                new.remove_header(name)
                new.remove_header(name.capitalize())
        return new


_OPENER = urllib.request.build_opener(SameHostCredentials)


def urlopen(request: urllib.request.Request, timeout: float):
    """urllib.request.urlopen, but credentials never follow a redirect to another host."""
    return _OPENER.open(request, timeout=timeout)
