"""A few threads accept the connections of every simulated peer's uploader.

Each simulated peer keeps its own listening port and its own uploader server
(httpd.Server, one thread per connection, as in a real peer); only the accept
loop is shared. A real peer runs its accept loop on a thread of its own
(httpd.Listener), which then woke every poll interval to see whether it
should stop (it now sleeps until a connection or its stop, but a thread per
peer is still 5000 threads). In `dfly bench` at 5000 peers those were 5000
threads waking once a second each, taking the GIL in turn: most of the bench
process's system time went to futex calls, waves started late (each
Thread.start waited its turn), and closing the peers took minutes. An epoll
over many listening sockets wakes only when a connection arrives; a stop
wakes it through a socket pair.

Not one acceptor for all, though: each accepted connection gets its thread
(Thread.start waits until that thread has run, a GIL handoff away), so one
loop accepting for a whole wave queued the wave's piece requests behind each
other. The bench spreads its peers over a few dozen acceptors.
"""
import selectors
import socket
import threading

from dfly.httpd import Server


class Acceptor:
    """Accepts for many Servers on one named thread; add, remove, stop."""

    def __init__(self, name: str = "bench-acceptor"):
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()   # for add and remove, which other threads call
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> "Acceptor":
        self._thread.start()
        return self

    def add(self, server: Server) -> None:
        """Accept for `server` (bound and listening) from now on."""
        server.socket.setblocking(False)   # a connection reset before accept() must not block the loop
        with self._lock:
            self._selector.register(server.socket, selectors.EVENT_READ, server)

    def remove(self, server: Server) -> None:
        """Stop accepting for `server`; call before closing its socket."""
        with self._lock:
            try:
                self._selector.unregister(server.socket)
            except (KeyError, ValueError):
                pass   # never added, or removed already

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _loop(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select():
                if key.data is None:   # the wake-up pair: stop() was called
                    self._drain_wake()
                    continue
                self._dispatch(key.data)

    def _drain_wake(self) -> None:
        try:
            self._wake_r.recv(64)
        except OSError:
            pass

    def _dispatch(self, server: Server) -> None:
        # What serve_forever does when its socket is readable: accept (nothing on
        # an OSError: no connection after all, or the server was closed meanwhile,
        # its socket then has no descriptor to reuse), then the server's own
        # process_request (its limits, a thread for the connection).
        server._handle_request_noblock()
