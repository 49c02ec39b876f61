"""A small token server for the registry's `auth: token` mode (the Docker
registry token protocol), with the key and self-signed certificate it signs
with generated here: by the `cryptography` package when it is installed, else
by the `openssl` command (tests only; dfly itself stays stdlib). HAVE_SIGNER
says whether either is there.

GET /token?service=S&scope=repository:NAME:pull[,push] with HTTP Basic auth of
USER:PASSWORD answers {"token", "access_token", "expires_in"}: an RS256 JWT whose
x5c header carries the certificate the registry trusts (its rootcertbundle).
Wrong or missing credentials are a 401. Every request is recorded, so a test can
tell who asked for tokens, with what scope.
"""
import base64
import datetime
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from typing import List, Tuple
from urllib.parse import parse_qs, urlsplit

from helpers import QuietHandler, Serving, send_body, send_json

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.x509.oid import NameOID
    HAVE_CRYPTOGRAPHY = True
except ImportError:
    HAVE_CRYPTOGRAPHY = False
OPENSSL = shutil.which("openssl")
HAVE_SIGNER = HAVE_CRYPTOGRAPHY or bool(OPENSSL)

SERVICE = "dfly-test-registry"
ISSUER = "dfly-test-issuer"
TOKEN_TTL_S = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenRequest:
    user: str       # "" when no (valid) credentials came
    scope: str
    granted: bool


class _CryptographySigner:
    """An RSA key and its self-signed certificate, made in-process."""

    def __init__(self, cert_path: str):
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dfly test token signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self._key, hashes.SHA256()))
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())


class _OpensslSigner:
    """The same made and used by the `openssl` command; the key stays in a private folder."""

    def __init__(self, cert_path: str):
        self._folder = tempfile.mkdtemp(prefix="dfly-token-key-")
        self._key_path = os.path.join(self._folder, "key.pem")
        self._run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout",
                  self._key_path, "-out", cert_path, "-subj", "/CN=dfly test token signer")
        self.cert_der = self._run("x509", "-in", cert_path, "-outform", "DER")

    def sign(self, data: bytes) -> bytes:
        return self._run("dgst", "-sha256", "-sign", self._key_path, stdin=data)

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)

    @staticmethod
    def _run(*args: str, stdin: bytes = b"") -> bytes:
        return subprocess.run([OPENSSL] + list(args), input=stdin, capture_output=True,
                              check=True, timeout=30).stdout


class TokenServer:
    """Start with TokenServer(cert_path, user, password); stop() at teardown."""

    def __init__(self, cert_path: str, user: str, password: str, use_openssl: bool = False):
        self.user, self.password = user, password
        self._signer = (_CryptographySigner(cert_path) if HAVE_CRYPTOGRAPHY and not use_openssl
                        else _OpensslSigner(cert_path))
        self.cert_path = cert_path
        self.requests: List[TokenRequest] = []
        self._lock = threading.Lock()
        self._serving = Serving(_handler_for(self), "test-token-server")

    @property
    def realm(self) -> str:
        return "http://%s/token" % self._serving.address

    def stop(self) -> None:
        self._serving.stop()
        if hasattr(self._signer, "close"):
            self._signer.close()

    def granted(self) -> List[TokenRequest]:
        with self._lock:
            return [r for r in self.requests if r.granted]

    def token(self, scope: str, subject: str) -> str:
        """A signed JWT granting what `scope` asks (space-separated resource scopes)."""
        access = []
        for item in scope.split():
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._signer.cert_der).decode()]}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + TOKEN_TTL_S,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = "%s.%s" % (_b64url(json.dumps(header).encode()),
                                   _b64url(json.dumps(claims).encode()))
        signature = self._signer.sign(signing_input.encode())
        return "%s.%s" % (signing_input, _b64url(signature))

    def _check(self, authorization: str) -> Tuple[bool, str]:
        if not authorization.startswith("Basic "):
            return False, ""
        try:
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        except ValueError:
            return False, ""
        return (user == self.user and password == self.password), user

    def _record(self, request: TokenRequest) -> None:
        with self._lock:
            self.requests.append(request)


def _handler_for(server: TokenServer):
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            query = parse_qs(urlsplit(self.path).query)
            scope = " ".join(query.get("scope", []))
            ok, user = server._check(self.headers.get("Authorization", ""))
            server._record(TokenRequest(user if ok else "", scope, ok))
            if not ok or query.get("service", [""])[0] != SERVICE:
                send_body(self, b'{"details": "bad credentials"}', 401,
                          {"WWW-Authenticate": 'Basic realm="dfly-test-tokens"',
                           "Content-Type": "application/json"})
                return
            token = server.token(scope, user)
            send_json(self, {"token": token, "access_token": token, "expires_in": TOKEN_TTL_S})

    return Handler
