"""A real FTP server (pyftpdlib, PyPI) on 127.0.0.1:0 for the source tests:
files under a folder, one user with a password, and what the tests look at:
the REST offsets asked for, the bytes each RETR sent, and two faults (SIZE
that lies, a transfer that ends early), plus a rate limit so a fetch can be
caught midway. The server runs in one named thread; stop() ends it."""
import logging
import os
import threading
from typing import Dict, List, Optional, Tuple
from urllib.parse import quote

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, ThrottledDTPHandler
from pyftpdlib.servers import FTPServer

USER, PASSWORD = "fetcher", "s3cr3t-pw"


class FtpOrigin:
    def __init__(self, root: str, rate_bytes_per_s: int = 0, tls: Optional[Tuple[str, str]] = None,
                 host: str = "127.0.0.1"):
        """`tls`: (certificate, key) files: explicit FTPS (AUTH TLS), required on both channels.
        `host`: 127.0.0.1, or ::1 for the IPv6 tests."""
        self.root, self.host = root, host
        os.makedirs(root, exist_ok=True)
        self.rests: List[int] = []        # REST offsets, in order
        self.sent: List[int] = []         # bytes each data connection sent, in order
        self.size_lies: Dict[str, int] = {}   # name -> bytes added to the true SIZE
        self.cut_after: Dict[str, int] = {}   # name -> a RETR sends this much, then ends
        self._lock = threading.Lock()
        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, PASSWORD, root, perm="elr")
        origin = self

        data_base, control_base = ThrottledDTPHandler, FTPHandler
        if tls is not None:   # pyftpdlib's TLS needs pyOpenSSL (PyPI), only for these
            from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
            data_base, control_base = TLS_DTPHandler, TLS_FTPHandler

        class Data(data_base):
            read_limit = rate_bytes_per_s

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                with origin._lock:
                    self._entry = len(origin.sent)
                    origin.sent.append(0)

            def send(self, data):
                # Counted before a client can have them: a client done reading finds them
                # all here (counted at close, the last ones could still be on their way).
                self._count(len(data))
                sent = 0
                try:
                    sent = super().send(data)
                    return sent
                finally:
                    self._count(sent - len(data))

            def _count(self, n: int) -> None:
                with origin._lock:
                    origin.sent[self._entry] += n

        class Handler(control_base):
            dtp_handler = Data
            banner = "dfly test ftp"

            def ftp_REST(self, line):
                with origin._lock:
                    origin.rests.append(int(line) if line.isdigit() else -1)
                return super().ftp_REST(line)

            def ftp_SIZE(self, path):
                lie = origin.size_lies.get(os.path.basename(path))
                if lie is None:
                    return super().ftp_SIZE(path)
                self.respond("213 %d" % (os.path.getsize(path) + lie))

            def ftp_RETR(self, file):
                cut = origin.cut_after.pop(os.path.basename(file), None)
                if cut is not None:
                    self._restart_position = 0
                    with open(file, "rb") as f:
                        head = f.read(cut)
                    short = file + ".cut"
                    with open(short, "wb") as f:
                        f.write(head)
                    file = short
                return super().ftp_RETR(file)

        Handler.authorizer = authorizer
        Handler.timeout = 30
        Handler.auth_failed_timeout = 0.1   # a wrong password is answered at once
        if tls is not None:
            Handler.certfile, Handler.keyfile = tls
            Handler.tls_control_required = Handler.tls_data_required = True
        self.scheme = "ftps" if tls else "ftp"
        logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
        self.server = FTPServer((host, 0), Handler)
        self.server.max_cons = 64
        self.port = self.server.socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ftp-origin", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        self.server.close_all()

    def add(self, name: str, data: bytes) -> str:
        path = os.path.join(self.root, name)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
        return self.url(name)

    def url(self, name: str, user: Optional[str] = USER, password: str = PASSWORD) -> str:
        who = "" if user is None else "%s:%s@" % (quote(user, safe=""), quote(password, safe=""))
        shown = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s%s:%d/%s" % (self.scheme, who, shown, self.port, name)

    def body_bytes(self) -> int:
        with self._lock:
            return sum(self.sent)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
