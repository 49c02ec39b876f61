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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional

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

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_PUT(self):
                server._record(self)
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
                if self.path != "/latest/api/token" or not ttl.isdigit() or not 0 < int(ttl) <= 21600:
                    return self._send(400, b"")
                token = secrets.token_hex(16)
                with server._lock:
                    server._tokens[token] = True
                self._send(200, token.encode())

            def do_GET(self):
                server._record(self)
                if self.path == CONTAINER_PATH:
                    if self.headers.get("Authorization") != server.container_token:
                        return self._send(401, b"")
                    return self._send(200, server._credentials(container=True))
                if not server._tokens.get(self.headers.get("X-aws-ec2-metadata-token", "")):
                    return self._send(401, b"")   # IMDSv2: no token, no answer
                if self.path == CREDENTIALS:
                    return self._send(200, ROLE.encode())
                if self.path == CREDENTIALS + ROLE:
                    return self._send(200, server._credentials(container=False))
                self._send(404, b"")

            def _send(self, status: int, body: bytes):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.container_url = self.url + CONTAINER_PATH
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metadata-server",
                                        daemon=True)
        self._thread.start()

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
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)
