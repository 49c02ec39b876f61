"""Task URLs as shown to whoever asks (task listings, error texts, logs).

A URL often carries its own credentials: user:password@, or a signed URL's
query (X-Amz-Signature, token, sig, ...), which --filter keeps out of the task
id but not out of the URL. Which parameters are secret cannot be told in
general, so every query value goes: `name=value` shows as `name=***`, a bare
item as `***`, userinfo as `***@`, and the fragment is dropped. Scheme, host,
port and path stay, which is what an operator needs to tell tasks apart.
"""
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
