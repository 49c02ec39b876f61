"""`dfly demo`: the whole system on loopback in one process, for a newcomer.

Starts an origin (http.server over a generated file, counting what it sends),
a supernode, and several peers downloading at once; then prints where every
byte came from: the origin served the file once, the peers served each other.
"""
import hashlib
import os
import shutil
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional, TextIO

from dfly.client import Client
from dfly.peer.progress import human_bytes
from dfly.supernode import app
from dfly.supernode.config import SupernodeConfig


class CountingOrigin:
    """A static file server on 127.0.0.1 that counts the body bytes it sent."""

    def __init__(self, root: str):
        origin = self
        self.sent_bytes = 0
        self._lock = threading.Lock()

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=root, **kw)

            def copyfile(self, source, outputfile):
                while True:
                    block = source.read(1 << 20)
                    if not block:
                        return
                    outputfile.write(block)
                    with origin._lock:
                        origin.sent_bytes += len(block)

            def end_headers(self):
                # A strong ETag, as nginx sends ("mtime-size"): without one every cut of
                # the file is a content version of its own (cdn.content_version_for), so a
                # supernode taking a task over would make peers start over.
                path = self.translate_path(self.path)
                if os.path.isfile(path):
                    st = os.stat(path)
                    self.send_header("ETag", '"%x-%x"' % (st.st_mtime_ns, st.st_size))
                super().end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="demo-origin",
                                        daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return "http://127.0.0.1:%d/%s" % (self.server.server_address[1], name)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_random_file(path: str, size: int) -> str:
    """A file of `size` pseudo-random bytes; returns its sha256 digest string."""
    digest = hashlib.sha256()
    block = hashlib.sha256(b"dfly demo").digest() * (1 << 15)   # 1 MiB, cheap to make
    with open(path, "wb") as f:
        left, n = size, 0
        while left:
            chunk = (n.to_bytes(8, "big") + block)[:min(len(block), left)]
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
            n += 1
    return "sha256:" + digest.hexdigest()


def run(peers: int, size: int, data_dir: Optional[str], out: TextIO) -> int:
    root = data_dir or tempfile.mkdtemp(prefix="dfly-demo-")
    os.makedirs(os.path.join(root, "origin"), exist_ok=True)
    digest = write_random_file(os.path.join(root, "origin", "file.bin"), size)
    origin = CountingOrigin(os.path.join(root, "origin"))
    supernode = app.start(SupernodeConfig(listen="127.0.0.1:0"), os.path.join(root, "supernode"))
    for i in range(peers):
        os.makedirs(os.path.join(root, "peer%d" % i), exist_ok=True)
    clients = [Client([supernode.address], data_dir=os.path.join(root, "peer%d" % i),
                      upload_listen="127.0.0.1:0") for i in range(peers)]
    results, failures = [None] * peers, []

    def fetch(i: int) -> None:
        try:
            results[i] = clients[i].download(origin.url("file.bin"),
                                             os.path.join(root, "peer%d" % i, "file.bin"), digest=digest)
        except Exception as e:
            failures.append("peer %d: %s" % (i, e))

    out.write("dfly demo: %d peers fetch a %s file from one origin through one supernode\n"
              % (peers, human_bytes(size)))
    threads = [threading.Thread(target=fetch, args=(i,), name="demo-peer-%d" % i) for i in range(peers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for c in clients:
            c.close()
        supernode.stop()
        origin.stop()
    for i, r in enumerate(results):
        if r is not None:
            out.write("  peer %d: %s in %.2fs, from supernode %s, from peers %s, verified %s\n" % (
                i, human_bytes(r.length), r.elapsed_s, human_bytes(r.bytes_from_supernode),
                human_bytes(r.bytes_from_peers), digest[:19]))
    for failure in failures:
        out.write("  %s\n" % failure)
    from_peers = sum(r.bytes_from_peers for r in results if r)
    total = sum(r.length for r in results if r)
    out.write("origin sent %s for %d copies (%.2f x the file); peers served %s of %s (%.0f%%)\n" % (
        human_bytes(origin.sent_bytes), peers, origin.sent_bytes / max(size, 1), human_bytes(from_peers),
        human_bytes(total), 100.0 * from_peers / max(total, 1)))
    if data_dir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0
