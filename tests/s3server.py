"""A real S3-compatible server for the source tests: moto (PyPI, moto[server])
in its own process on 127.0.0.1:0, with signature checking switched on after
setup, so a request signed with the wrong secret is refused as AWS would.

Setup (an IAM user with an S3 policy and an access key, a bucket) runs while
moto still accepts anything; then POST /moto-api/reset-auth 0 makes every
later request need a valid SigV4 signature from a key it knows. The process
gets proxy variables pointing at a closed loopback port, so anything in it
that tried to reach beyond loopback would fail rather than leave the host.
Run as a script, it serves until its stdin closes and prints its port.
"""
import json
import os
import subprocess
import sys
import urllib.request
from typing import Optional

from relay import Relay

REGION = "us-east-1"
ROLE = "dfly-s3-reader"
LOOPBACK_ONLY = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
                 "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
                 "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
                 "AWS_ACCESS_KEY_ID": "setup", "AWS_SECRET_ACCESS_KEY": "setup",
                 "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}


class S3Origin:
    def __init__(self):
        env = dict(os.environ, **LOOPBACK_ONLY)
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        line = self.proc.stdout.readline().decode().strip()   # bounded by the test's time limit
        if not line.isdigit():
            self.stop()
            raise RuntimeError("moto did not start: %r" % line)
        self.endpoint = "http://127.0.0.1:%s" % line
        self.access_key, self.secret_key = self._setup()

    def _client(self, service: str, key: str = "setup", secret: str = "setup"):
        import boto3
        from botocore.config import Config
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=key, aws_secret_access_key=secret,
                            config=Config(proxies={}, retries={"max_attempts": 1},
                                          s3={"addressing_style": "path"}))

    def _setup(self):
        iam = self._client("iam")
        iam.create_user(UserName="dfly")
        iam.put_user_policy(UserName="dfly", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": ["s3:*", "sts:AssumeRole"],
                            "Resource": "*"}]}))
        key = iam.create_access_key(UserName="dfly")["AccessKey"]
        # A role whose temporary keys read S3: what an instance or a container is given.
        iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": "*"}}]}))
        iam.put_role_policy(RoleName=ROLE, PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        self._client("s3").create_bucket(Bucket="dfly-bucket")
        request = urllib.request.Request(self.endpoint + "/moto-api/reset-auth", data=b"0",
                                         headers={"Content-Type": "text/plain"},
                                         method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        opener.open(request, timeout=10).close()
        return key["AccessKeyId"], key["SecretAccessKey"]

    def temporary_credentials(self, duration_s: int = 900) -> dict:
        """Fresh keys of the S3 role (STS AssumeRole, as EC2 and ECS hand out): moto's
        Credentials dict (AccessKeyId, SecretAccessKey, SessionToken, Expiration)."""
        sts = self._client("sts", self.access_key, self.secret_key)
        return sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/" + ROLE,
                               RoleSessionName="dfly-test", DurationSeconds=duration_s)["Credentials"]

    def put(self, key: str, data: bytes, bucket: str = "dfly-bucket") -> str:
        """Store `data` (signed with the real key: auth is on); the object's ETag."""
        s3 = self._client("s3", self.access_key, self.secret_key)
        return s3.put_object(Bucket=bucket, Key=key, Body=data)["ETag"]

    def add_bucket(self, name: str, region: str) -> None:
        """A bucket in another region (moto notes it and names it in HEAD's x-amz-bucket-region)."""
        s3 = self._client("s3", self.access_key, self.secret_key)
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})

    def settings(self, secret: Optional[str] = None) -> dict:
        """The dfly source settings that reach this server."""
        return {"s3_endpoint": self.endpoint, "s3_access_key_id": self.access_key,
                "s3_secret_access_key": secret or self.secret_key, "s3_region": REGION}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc.stdout.close()


def _serve() -> None:
    import logging
    logging.getLogger("werkzeug").setLevel(logging.ERROR)   # one line per request otherwise
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    sys.stdout.write("%d\n" % server.get_host_and_port()[1])
    sys.stdout.flush()
    sys.stdin.read()   # until the test closes it
    server.stop()


if __name__ == "__main__":
    _serve()


class CuttingProxy(Relay):
    """A TCP relay on 127.0.0.1:0 in front of the S3 server: counts the bytes the
    server sends back, and can cut the next connection after `cut_after` of them
    (a transfer broken midway, which moto itself cannot be made to do)."""

    def __init__(self, target: str, host: str = "127.0.0.1"):
        """`host`: where the relay listens (::1: an IPv6 endpoint in front of moto)."""
        self.sent_back = 0
        self.cut_after: Optional[int] = None
        super().__init__(target, host)
        self.endpoint = "http://" + self.address

    def connection(self) -> dict:
        with self._lock:
            cut, self.cut_after = self.cut_after, None
        return {"left": cut}

    def passing(self, data: bytes, state: dict, upstream: bool):
        if upstream:
            return data, True
        left = state["left"]
        if left is not None:
            data = data[:left]
            state["left"] = left - len(data)
        with self._lock:   # before the client can have them: it finds them counted when done
            self.sent_back += len(data)
        return data, state["left"] is None or state["left"] > 0


class RegionalFront:
    """An HTTP relay on 127.0.0.1:0 in front of the S3 server that answers as AWS's
    regional endpoints do for buckets in `regions` (bucket -> region): a request
    signed for another region is refused naming the bucket's region, in one of
    AWS's ways (`mode`): "400" (AuthorizationHeaderMalformed, <Region> in the
    body), "301" (PermanentRedirect, x-amz-bucket-region header) or "301-bare"
    (neither: a HEAD of the bucket tells it, even unsigned). Everything else is
    passed to the server unchanged (Host too, so signatures still check).
    `signed_for` lists each GET's signing region."""

    def __init__(self, target: str, regions: dict, mode: str = "400"):
        import http.client
        import re

        from helpers import QuietHandler, Serving, send_body
        host, port = target.rsplit("/", 1)[-1].rsplit(":", 1)
        self.regions = regions
        self.mode = mode
        self.signed_for = []
        front = self

        class Handler(QuietHandler):
            def do_HEAD(self):
                bucket = self.path.lstrip("/").split("/")[0].split("?")[0]
                if bucket in front.regions:
                    send_body(self, b"", 403, {"x-amz-bucket-region": front.regions[bucket]})
                    return
                self._relay()

            def do_GET(self):
                m = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/s3/", self.headers.get("Authorization", ""))
                signed = m.group(1) if m else ""
                front.signed_for.append(signed)
                bucket = self.path.lstrip("/").split("/")[0]
                wanted = front.regions.get(bucket)
                if wanted is None or signed == wanted:
                    return self._relay()
                if front.mode == "400":
                    body = ("<Error><Code>AuthorizationHeaderMalformed</Code><Message>the region "
                            "'%s' is wrong; expecting '%s'</Message><Region>%s</Region></Error>"
                            % (signed, wanted, wanted)).encode()
                    self._send(400, body, {})
                elif front.mode == "301":
                    self._send(301, b"<Error><Code>PermanentRedirect</Code></Error>",
                               {"x-amz-bucket-region": wanted})
                else:
                    self._send(301, b"<Error><Code>PermanentRedirect</Code></Error>", {})

            def _send(self, status, body, headers):
                send_body(self, body, status, dict(headers, **{"Content-Type": "application/xml"}))

            def _relay(self):
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
                try:
                    conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for name, value in self.headers.items():
                        conn.putheader(name, value)
                    conn.endheaders()
                    reply = conn.getresponse()
                    body = reply.read()
                    self.send_response(reply.status)
                    for name, value in reply.getheaders():
                        if name.lower() not in ("connection", "transfer-encoding", "content-length",
                                                "server", "date"):
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                finally:
                    conn.close()

        self._serving = Serving(Handler, "s3-regional-front")
        self.endpoint = "http://" + self._serving.address

    def stop(self) -> None:
        self._serving.stop()
