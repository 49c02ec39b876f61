"""Task URLs as shown to whoever asks (task listings, error texts, logs).

A URL often carries its own credentials: user:password@, or a signed URL's
query (X-Amz-Signature, token, sig, ...), which --filter keeps out of the task
id but not out of the URL. Which parameters are secret cannot be told in
general, so every query value goes: `name=value` shows as `name=***`, a bare
item as `***`, userinfo as `***@`, and the fragment is dropped. Scheme, host,
port and path stay, which is what an operator needs to tell tasks apart.
Errors show less (shown_url): no query at all, no user info, the path cut
at 200 characters.
"""
import re
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"


def redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return HIDDEN
    netloc = parts.netloc
    if "@" in netloc:
        netloc = HIDDEN + "@" + netloc.rpartition("@")[2]
    items = []
    for item in parts.query.split("&") if parts.query else ():
        name, sep, _ = item.partition("=")
        items.append(name + "=" + HIDDEN if sep else HIDDEN)
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(items), ""))


def redact_text(text: str, url: str) -> str:
    """`text` (an error message, say) with `url` in it shown redacted."""
    return text.replace(url, redact_url(url)) if url and text else text


_URL_WITH_SECRETS = re.compile(r"""[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'"<>]*[?@#][^\s'"<>]*""")


def redact_urls_in(text: str) -> str:
    """`text` (a log line, an error) with every URL in it that has a query, userinfo or
    fragment shown redacted: for lines that do not know which URL they carry."""
    if "://" not in text:
        return text
    def one(match) -> str:
        url = match.group(0)
        tail = len(url) - len(url.rstrip(".,;:)]"))   # the sentence's punctuation, not the URL's
        return redact_url(url[:len(url) - tail]) + url[len(url) - tail:]
    return _URL_WITH_SECRETS.sub(one, text)


def shown_url(url: str) -> str:
    """The URL as errors show it: no query (signed-URL tokens), no user info."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = "[%s]" % host
    return "%s://%s%s%s" % (parts.scheme, host, ":%d" % parts.port if _port(parts) else "",
                            parts.path[:200])


def _port(parts) -> Optional[int]:
    try:
        return parts.port
    except ValueError:
        return None
