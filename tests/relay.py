"""A TCP relay for tests that need a fault between a client and a real server
(a reply kept back, a transfer cut midway), which neither end can be made to
do itself. Subclasses say what passes (`passing`)."""
import socket
import threading
from typing import Tuple


class Relay:
    """Listens on `host`:0 (::1 too) in front of `target` ("host:port", or a URL
    ending in it); each connection gets its own to the target and two pump
    threads. `address` is "host:port" as clients dial it."""

    def __init__(self, target: str, host: str = "127.0.0.1"):
        name, port = target.rsplit("/", 1)[-1].rsplit(":", 1)
        self.target = (name.strip("[]"), int(port))
        self._lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, 0), family=family)
        shown = "[%s]" % host if ":" in host else host
        self.address = "%s:%d" % (shown, self._listener.getsockname()[1])
        self._threads = [threading.Thread(target=self._accept, name="test-relay", daemon=True)]
        self._threads[0].start()

    def connection(self):
        """A new connection's state, handed to `passing` and `ended` (None here)."""
        return None

    def passing(self, data: bytes, state, upstream: bool) -> Tuple[bytes, bool]:
        """What of `data` (read from the client if `upstream`, else from the server)
        goes on, and whether the pump goes on after it: all of it, yes, here."""
        return data, True

    def ended(self, state, upstream: bool) -> None:
        """One direction of a connection ended (both sockets are closed next)."""

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target, timeout=10)
            state = self.connection()
            for args in ((client, server, state, True), (server, client, state, False)):
                thread = threading.Thread(target=self._pump, args=args, name="test-relay-pump",
                                          daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, src: socket.socket, dst: socket.socket, state, upstream: bool) -> None:
        try:
            going = True
            while going:
                data = src.recv(65536)
                if not data:
                    break
                data, going = self.passing(data, state, upstream)
                if data:
                    dst.sendall(data)
        except OSError:
            pass
        self.ended(state, upstream)
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def stop(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)   # wakes its accept() (closing does not)
        except OSError:
            pass
        self._listener.close()
        for thread in self._threads:
            thread.join(5)
