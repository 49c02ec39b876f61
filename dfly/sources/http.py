"""http(s) sources: urllib through protocol/redirects (credentials never follow
a redirect to another host; the source policy judges every URL and address).
HTTP already speaks the sources' interface; what this adds is the TLS context
for https sources (--source-ca-file, --source-cert/--source-key,
--source-insecure) and a clear sentence for a certificate that is not trusted.
"""
import ssl
import urllib.error
import urllib.request
from typing import Dict, Optional

from dfly.errors import SourceError
from dfly.sources.config import SourceOptions


def open_url(url: str, headers: Dict[str, str], timeout_s: float, policy,
             options: SourceOptions):
    from dfly.protocol import redirects
    request = urllib.request.Request(url, headers=headers)
    try:
        return redirects.urlopen(request, timeout=timeout_s, policy=policy,
                                 context=tls_context(options))
    except urllib.error.URLError as e:
        if isinstance(getattr(e, "reason", None), ssl.SSLCertVerificationError):
            raise untrusted(url, e.reason)
        raise
    except ssl.SSLCertVerificationError as e:
        raise untrusted(url, e)


def tls_context(options: SourceOptions) -> Optional[ssl.SSLContext]:
    """The context sources' certificates are checked with; None: urllib's default
    (the system's CAs), as before any of these options existed."""
    if not (options.source_ca_file or options.source_cert or options.source_insecure):
        return None
    try:
        context = ssl.create_default_context(cafile=options.source_ca_file or None)
        if options.source_insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if options.source_cert:
            context.load_cert_chain(options.source_cert, options.source_key or None)
    except (OSError, ssl.SSLError) as e:
        raise SourceError("cannot load the source TLS files (--source-ca-file, --source-cert, "
                          "--source-key): %s" % e)
    return context


def untrusted(url: str, error) -> SourceError:
    from dfly.protocol.redact import shown_url
    why = getattr(error, "verify_message", "") or str(error)
    return SourceError("the certificate of %s is not trusted (%s): give its CA with "
                       "--source-ca-file (or, knowingly, --source-insecure)"
                       % (shown_url(url), why))
