"""`dfly get` handing its download to the daemon on the same host (docs/PROTOCOL.md).

    POST /v1/downloads  {"url": ..., "output": "/abs/path", "digest": "sha256:..." | null,
                         "headers": {...}, "filters": [...], "identifier": null,
                         "timeout_s": 10.0 | null}
    200 -> the DownloadResult as JSON; errors as {"error", "kind"} with the kind's status.

Parsing is strict: the daemon writes where this names, so only an absolute
path is accepted, and only from a loopback client (checked by the daemon).
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from dfly.errors import BadRequest
from dfly.protocol.digest import parse_digest
from dfly.protocol.messages import MAX_URL_LEN, _headers, _names, _str
from dfly.protocol.urls import normalize_url


@dataclass
class HandoffRequest:
    url: str
    output: str
    digest: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)
    filters: List[str] = field(default_factory=list)
    identifier: Optional[str] = None
    timeout_s: Optional[float] = None   # get's --timeout: past it, nothing is written to output

    @classmethod
    def parse(cls, body: dict) -> "HandoffRequest":
        url = normalize_url(_str(body, "url", required=True, limit=MAX_URL_LEN))
        output = _str(body, "output", required=True, limit=4096)
        if not os.path.isabs(output) or "\0" in output:
            raise BadRequest("output must be an absolute path")
        digest = _str(body, "digest")
        if digest is not None:
            try:
                parse_digest(digest)
            except ValueError as e:
                raise BadRequest(str(e))
        return cls(url, os.path.normpath(output), digest.lower() if digest else None,
                   _headers(body.get("headers")), _names(body.get("filters"), "filters"),
                   _str(body, "identifier"), _timeout(body.get("timeout_s")))

    def to_json(self) -> dict:
        return {"url": self.url, "output": self.output, "digest": self.digest,
                "headers": self.headers, "filters": self.filters, "identifier": self.identifier,
                "timeout_s": self.timeout_s}


def _timeout(value) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e9:
        raise BadRequest("timeout_s must be a positive number of seconds")
    return float(value)
