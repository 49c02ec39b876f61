"""The real parts of the registry tests: Debian's `docker-registry` (the CNCF
distribution registry) as the upstream, `skopeo` as the client, and OCI image
layouts built here from random layers (an amd64 and an arm64 image under one
index), pushed with skopeo as users push.

The registry runs on 127.0.0.1 port 0 with filesystem storage under the test's
folder; its bound address is read from its log. Its access log is kept, so a
test can count the blob GETs the registry answered and the bytes it sent. The
log is read on a thread, so a line can still be on its way after the answer
it records has arrived: call settle() before counting.
"""
import base64
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from helpers import content, wait_until

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO_BIN = shutil.which("skopeo") or "/usr/bin/skopeo"
HAVE_REGISTRY = os.path.exists(REGISTRY_BIN) and os.access(REGISTRY_BIN, os.X_OK)
HAVE_SKOPEO = os.path.exists(SKOPEO_BIN) and os.access(SKOPEO_BIN, os.X_OK)
MISSING = ("needs docker-registry and skopeo (apt-get install docker-registry skopeo)"
           if not (HAVE_REGISTRY and HAVE_SKOPEO) else "")
START_TIMEOUT_S = 15
SKOPEO_TIMEOUT_S = 60

# bcrypt of "s3cret" (cost 5, fixed salt): the stdlib cannot make one on every Python
HTPASSWD = "puller:$2b$05$abcdefghijklmnopqrstuuLK7U1u6pVRmL7L1BBM2aS35PSZnDXlK"
USER, PASSWORD = "puller", "s3cret"
TOKEN_SERVICE, TOKEN_ISSUER = "dfly-test-registry", "dfly-test-issuer"   # as tokens.py signs

_ACCESS = re.compile(r'"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP/[\d.]+" (\d{3}) (\d+|-)')
_LISTENING = re.compile(r"listening on (\S+?):(\d+)")
_MARKER = "/dfly-test-settle/"   # settle()'s requests: a 404 the registry logs, kept out of accesses
SETTLE_TIMEOUT_S = 10
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # no *_proxy from the environment


@dataclass
class Access:
    method: str
    path: str
    status: int
    body_bytes: int


class Registry:
    """A docker-registry process; stop() at teardown."""

    def __init__(self, root: str, auth: bool = False, token_realm: str = "", token_cert: str = "",
                 listen: str = "127.0.0.1:0"):
        """auth: htpasswd basic auth; token_realm/token_cert: bearer tokens from that realm,
        signed by the key of that certificate (see tokens.py). listen: [::]:0 for a
        dual-stack registry (pushed to over 127.0.0.1, reachable at [::1] too)."""
        os.makedirs(root, exist_ok=True)
        config = ["version: 0.1", "log:", "  level: info", "  accesslog:", "    disabled: false",
                  "storage:", "  filesystem:", "    rootdirectory: %s" % os.path.join(root, "data"),
                  "  delete:", "    enabled: true",
                  "http:", "  addr: \"%s\"" % listen, "  secret: dfly-test-secret"]
        if token_realm:
            config += ["auth:", "  token:", "    realm: %s" % token_realm,
                       "    service: %s" % TOKEN_SERVICE, "    issuer: %s" % TOKEN_ISSUER,
                       "    rootcertbundle: %s" % token_cert]
        elif auth:
            with open(os.path.join(root, "htpasswd"), "w") as f:
                f.write(HTPASSWD + "\n")
            config += ["auth:", "  htpasswd:", "    realm: dfly-test",
                       "    path: %s" % os.path.join(root, "htpasswd")]
        path = os.path.join(root, "config.yml")
        with open(path, "w") as f:
            f.write("\n".join(config) + "\n")
        self.accesses: List[Access] = []
        self.log_lines: List[str] = []
        self._markers_sent = 0
        self._markers_read = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.address = ("", 0)
        self.process = subprocess.Popen([REGISTRY_BIN, "serve", path], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read_log, name="registry-log", daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT_S):
            self.stop()
            raise RuntimeError("docker-registry did not start:\n" + "\n".join(self.log_lines[-20:]))

    def _read_log(self) -> None:
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            with self._lock:
                self.log_lines.append(line)
                m = _ACCESS.search(line)
                if m and m.group(2).startswith(_MARKER):
                    self._markers_read += 1
                elif m:
                    size = int(m.group(4)) if m.group(4).isdigit() else 0
                    self.accesses.append(Access(m.group(1), m.group(2), int(m.group(3)), size))
            m = _LISTENING.search(line)
            if m and not self._ready.is_set():
                self.address = (m.group(1), int(m.group(2)))
                self._ready.set()

    @property
    def host(self) -> str:
        if self.address[0] in ("[::]", "", "0.0.0.0"):   # every address: skopeo dials IPv4
            return "127.0.0.1:%d" % self.address[1]
        return "%s:%d" % self.address

    @property
    def url(self) -> str:
        return "http://%s" % self.host

    def settle(self) -> None:
        """Read every access line for requests answered before this call. The registry
        writes its lines in order on one stream (each as its handler returns: for a
        blob, just after the last byte went out), and the reader records them in that
        order: one more request of our own, and once its line is read every earlier
        line is too. (A request still in flight, say one the daemon makes in the
        background, is not waited for: wait for what the test expects instead.)"""
        with self._lock:
            self._markers_sent += 1
            sent = self._markers_sent
        try:
            with _DIRECT.open("%s%s%d" % (self.url, _MARKER, sent), timeout=SETTLE_TIMEOUT_S) as reply:
                status = reply.status
        except urllib.error.HTTPError as e:
            status = e.code
            e.close()
        assert status == 404, "the registry answered its settle request %d" % status
        wait_until(lambda: self._read_markers() >= sent, SETTLE_TIMEOUT_S,
                   message="the registry's access line for its settle request")

    def _read_markers(self) -> int:
        with self._lock:
            return self._markers_read

    def blob_gets(self, digest: Optional[str] = None) -> List[Access]:
        """GETs of blobs (of `digest`) the registry answered 200 or 206."""
        with self._lock:
            return [a for a in self.accesses if a.method == "GET" and "/blobs/" in a.path
                    and a.status in (200, 206) and (digest is None or a.path.endswith(digest))]

    def blob_not_modified(self) -> List[Access]:
        """Conditional GETs of blobs the registry answered 304 (a revalidated copy)."""
        with self._lock:
            return [a for a in self.accesses if a.method == "GET" and "/blobs/" in a.path
                    and a.status == 304]

    def blob_bytes(self) -> int:
        return sum(a.body_bytes for a in self.blob_gets())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._reader.join(10)
        if self.process.stdout and not self._reader.is_alive():   # never closed under the reader
            self.process.stdout.close()


# images -------------------------------------------------------------------------------

@dataclass
class Image:
    """An OCI layout holding one index of per-platform images."""
    layout: str
    tag: str
    index_digest: str = ""
    manifests: Dict[str, str] = field(default_factory=dict)        # arch -> manifest digest
    layers: Dict[str, List[str]] = field(default_factory=dict)     # arch -> layer digests
    blob_sizes: Dict[str, int] = field(default_factory=dict)       # digest -> size

    def size_of(self, arch: str) -> int:
        return sum(self.blob_sizes[d] for d in self.layers[arch])


def _put_blob(layout: str, data: bytes) -> str:
    hexdigest = hashlib.sha256(data).hexdigest()
    folder = os.path.join(layout, "blobs", "sha256")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, hexdigest), "wb") as f:
        f.write(data)
    return "sha256:" + hexdigest


def _layer_tar(name: str, size: int, seed: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, 0, 0o644
        tar.addfile(info, io.BytesIO(content(size, seed)))
    return out.getvalue()


def build_image(layout: str, tag: str = "v1", layer_sizes=(3 << 20, 1 << 20),
                arches=("amd64", "arm64"), seed: int = 0, shared_layer: int = 0) -> Image:
    """An OCI layout at `layout`: per arch, random uncompressed tar layers; the first
    `shared_layer` layers are the same bytes in every arch."""
    image = Image(layout, tag)
    os.makedirs(layout, exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    entries = []
    for a, arch in enumerate(arches):
        layers, diff_ids = [], []
        for i, size in enumerate(layer_sizes):
            layer_seed = seed * 1000 + i if i < shared_layer else seed * 1000 + 100 * (a + 1) + i
            tar = _layer_tar("%s-layer%d.bin" % (arch, i) if i >= shared_layer else "shared%d.bin" % i,
                             size, layer_seed)
            data = gzip.compress(tar, compresslevel=1, mtime=0)   # as pushed: skopeo keeps it
            digest = _put_blob(layout, data)
            image.blob_sizes[digest] = len(data)
            layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                           "digest": digest, "size": len(data)})
            diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        config = json.dumps({"architecture": arch, "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": diff_ids},
                             "config": {"Labels": {"dfly.test": tag}}}, sort_keys=True).encode()
        config_digest = _put_blob(layout, config)
        image.blob_sizes[config_digest] = len(config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": config_digest, "size": len(config)},
                               "layers": layers}, sort_keys=True).encode()
        manifest_digest = _put_blob(layout, manifest)
        image.manifests[arch] = manifest_digest
        image.layers[arch] = [entry["digest"] for entry in layers]
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": manifest_digest, "size": len(manifest),
                        "platform": {"architecture": arch, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": entries}, sort_keys=True).encode()
    image.index_digest = _put_blob(layout, index)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": image.index_digest,
             "size": len(index), "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)
    return image


# skopeo -------------------------------------------------------------------------------

def skopeo(*args: str, timeout: float = SKOPEO_TIMEOUT_S, env: Optional[dict] = None,
           check: bool = True, runner: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """`runner`: a command skopeo runs under (say, one giving it a hosts file of its own)."""
    result = subprocess.run(list(runner) + [SKOPEO_BIN, "--insecure-policy"] + list(args),
                            stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError("skopeo %s failed (%d):\n%s" % (" ".join(args), result.returncode,
                                                            result.stderr.decode(errors="replace")))
    return result


def push(image: Image, registry: Registry, repo: str, creds: Optional[str] = None) -> None:
    args = ["copy", "--all", "--dest-tls-verify=false"]
    if creds:
        args.append("--dest-creds=" + creds)
    skopeo(*(args + ["oci:%s:%s" % (image.layout, image.tag),
                     "docker://%s/%s:%s" % (registry.host, repo, image.tag)]))


def mirror_conf(path: str, registry: Registry, mirror: str) -> str:
    """A registries.conf sending pulls of `registry` to the mirror at `mirror` (host:port)."""
    with open(path, "w") as f:
        f.write('[[registry]]\nlocation = "%s"\ninsecure = true\n\n'
                '[[registry.mirror]]\nlocation = "%s"\ninsecure = true\n' % (registry.host, mirror))
    return path


def auth_file(path: str, creds: str, *hosts: str) -> str:
    """A containers auth.json giving `creds` (user:password) for each of `hosts`."""
    token = base64.b64encode(creds.encode()).decode()
    with open(path, "w") as f:
        json.dump({"auths": {host: {"auth": token} for host in hosts}}, f)
    return path


def _mirror_of(conf: str) -> str:
    with open(conf) as f:
        return re.findall(r'location = "([^"]+)"', f.read())[-1]


def pull(conf: str, registry: Registry, repo: str, tag: str, dest: str, arch: str = "amd64",
         creds: Optional[str] = None, check: bool = True,
         runner: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """skopeo copy docker://REGISTRY/repo:tag dir:DEST through the mirror in `conf`."""
    args = ["--registries-conf", conf, "--override-arch", arch, "--override-os", "linux",
            "copy", "--src-tls-verify=false"]
    if creds:   # as users do: the mirror's entry holds the upstream's credentials
        args.append("--src-authfile=" + auth_file(conf + ".auth.json", creds, registry.host,
                                                  _mirror_of(conf)))
    else:
        args.append("--src-no-creds")
    return skopeo(*(args + ["docker://%s/%s:%s" % (registry.host, repo, tag), "dir:" + dest]),
                  check=check, runner=runner)


def dir_layers(dest: str) -> List[str]:
    """Layer digests of the image skopeo wrote to dir:DEST, each checked against its bytes."""
    with open(os.path.join(dest, "manifest.json"), "rb") as f:
        manifest = json.load(f)
    digests = []
    for layer in manifest["layers"] + [manifest["config"]]:
        hexdigest = layer["digest"].split(":", 1)[1]
        h = hashlib.sha256()
        with open(os.path.join(dest, hexdigest), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        assert h.hexdigest() == hexdigest, "layer %s is corrupt" % layer["digest"]
        digests.append(layer["digest"])
    return digests[:-1]
