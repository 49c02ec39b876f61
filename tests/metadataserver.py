"""The cloud's credential endpoints, on 127.0.0.1:0, for the S3 provider tests:
EC2's instance metadata service as IMDSv2 answers it (a PUT for a session
token with a TTL header, then GETs that must show the token) and the ECS
container endpoint (one GET that must show the authorization token). The
keys it hands out come from `issue()` (a real STS AssumeRole on the moto
server, so the S3 server accepts them); `expires_in_s` sets the Expiration
it reports. It counts every request, so a test sees what was asked and when.
"""
import datetime
import json
import secrets
import threading
from typing import Callable, Dict, List, Optional

from helpers import QuietHandler, Serving, send_body

ROLE = "dfly-s3-reader"
CONTAINER_PATH = "/v2/credentials/5e6f"
CREDENTIALS = "/latest/meta-data/iam/security-credentials/"


class MetadataServer:
    def __init__(self, issue: Callable[[], dict], container_token: str = "container-secret"):
        self.issue = issue
        self.container_token = container_token
        self.expires_in_s: Optional[float] = None   # None: the Expiration STS gave
        self.requests: List[str] = []               # "METHOD PATH" as asked
        self.issued: List[str] = []                 # access key ids handed out
        self._tokens: Dict[str, bool] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            def do_PUT(self):
                server._record(self)
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
                if self.path != "/latest/api/token" or not ttl.isdigit() or not 0 < int(ttl) <= 21600:
                    return send_body(self, b"", 400)
                token = secrets.token_hex(16)
                with server._lock:
                    server._tokens[token] = True
                send_body(self, token.encode())

            def do_GET(self):
                server._record(self)
                if self.path == CONTAINER_PATH:
                    if self.headers.get("Authorization") != server.container_token:
                        return send_body(self, b"", 401)
                    return send_body(self, server._credentials(container=True))
                if not server._tokens.get(self.headers.get("X-aws-ec2-metadata-token", "")):
                    return send_body(self, b"", 401)   # IMDSv2: no token, no answer
                if self.path == CREDENTIALS:
                    return send_body(self, ROLE.encode())
                if self.path == CREDENTIALS + ROLE:
                    return send_body(self, server._credentials(container=False))
                send_body(self, b"", 404)

        self._serving = Serving(Handler, "metadata-server")
        self.url = "http://" + self._serving.address
        self.container_url = self.url + CONTAINER_PATH

    def _record(self, handler) -> None:
        with self._lock:
            self.requests.append("%s %s" % (handler.command, handler.path))

    def _credentials(self, container: bool) -> bytes:
        given = self.issue()
        expires = given["Expiration"]
        if self.expires_in_s is not None:
            expires = datetime.datetime.now(datetime.timezone.utc) + \
                datetime.timedelta(seconds=self.expires_in_s)
        with self._lock:
            self.issued.append(given["AccessKeyId"])
        doc = {"AccessKeyId": given["AccessKeyId"], "SecretAccessKey": given["SecretAccessKey"],
               "Token": given["SessionToken"],
               "Expiration": expires.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        if not container:
            doc.update(Code="Success", Type="AWS-HMAC", LastUpdated=doc["Expiration"])
        return json.dumps(doc).encode()

    def stop(self) -> None:
        self._serving.stop()
