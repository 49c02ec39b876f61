"""Real certificates for the TLS tests, made with trustme (PyPI): a cluster CA,
host certificates for 127.0.0.1, an expired one, and one from another CA."""
import datetime
import os
import socket
import ssl
from typing import Dict, Optional

import trustme

HOSTS = ("127.0.0.1", "localhost", "::1")
PEM_BYTES = 4096   # every file padded to this (PEM ignores blank lines after it): see rotate_unseen


class Certs:
    """Certificate files under `folder`: `ca` (PEM) and, per name given to `host`,
    a (cert, key) pair signed by the cluster CA."""

    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self.authority = trustme.CA(organization_name="dfly test cluster")
        self.ca = self._write("ca.pem", self.authority.cert_pem.bytes())
        self._other: Optional[trustme.CA] = None

    def host(self, name: str, *identities: str, expired: bool = False,
             other_ca: bool = False) -> Dict[str, str]:
        """{"tls_cert": FILE, "tls_key": FILE} for a certificate named `identities`
        (127.0.0.1 and localhost by default)."""
        authority = self.authority
        if other_ca:
            self._other = self._other or trustme.CA(organization_name="someone else")
            authority = self._other
        dates = {}
        if expired:
            now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
            dates = {"not_before": now - datetime.timedelta(days=30),
                     "not_after": now - datetime.timedelta(days=1)}
        leaf = authority.issue_cert(*(identities or HOSTS), common_name=name, **dates)
        cert = self._write(name + ".crt", b"".join(b.bytes() for b in leaf.cert_chain_pems))
        key = self._write(name + ".key", leaf.private_key_pem.bytes())
        return {"tls_cert": cert, "tls_key": key}

    def rotate_unseen(self, name: str) -> None:
        """A new certificate and key for `name` written over the old files in place,
        same size, inode and modification time: only a reload (SIGHUP) can notice."""
        fresh = Certs(os.path.join(self.folder, "rotate"))
        fresh.authority = self.authority
        new = fresh.host(name)
        for kind, ext in (("tls_cert", ".crt"), ("tls_key", ".key")):
            path = os.path.join(self.folder, name + ext)
            before = os.stat(path)
            with open(new[kind], "rb") as f:
                data = f.read()
            with open(path, "r+b") as f:
                f.write(data)
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    def mtls(self, name: str, **kwargs) -> Dict[str, str]:
        """The settings of a cluster program with its own certificate, requiring
        certificates of its clients: what every program of an mTLS cluster gets."""
        return dict(self.host(name, **kwargs), tls_ca=self.ca, tls_client_auth="require")

    def _write(self, name: str, data: bytes) -> str:
        data = data.ljust(PEM_BYTES, b"\n")
        path = os.path.join(self.folder, name)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
        return path


def served_certificate(address: str, ca: str, client: Optional[Dict[str, str]] = None) -> bytes:
    """The certificate (DER) a TLS listener at `address` shows in a real handshake."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca)
    if client:
        context.load_cert_chain(client["tls_cert"], client["tls_key"])
    with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host.strip("[]")) as conn:
            return conn.getpeercert(binary_form=True)
