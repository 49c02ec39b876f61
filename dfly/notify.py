"""Telling systemd how a long-running dfly program is doing (sd_notify(3)).

A `Type=notify` unit hands the program `$NOTIFY_SOCKET`: an AF_UNIX datagram
socket (a path, or `@name` in the abstract namespace). The program sends
newline-separated `KEY=value` lines: `READY=1` once its listeners accept (so
units ordered after it start only then), `STATUS=` for `systemctl status`,
`STOPPING=1` when it begins to stop, and `WATCHDOG=1` at least every
`$WATCHDOG_USEC` (we ping at half that) so systemd restarts a hung process.
Without `$NOTIFY_SOCKET` every call does nothing: the same code runs under a
shell, in a container, or under systemd. A failed send is logged once, never
raised: systemd going away must not stop the service.
"""
import logging
import os
import socket
from typing import Mapping, Optional

log = logging.getLogger("dfly")


def parse_watchdog_s(environ: Mapping[str, str], pid: int) -> Optional[float]:
    """The watchdog interval in seconds asked of process `pid`, or None. A
    `$WATCHDOG_PID` naming another process means the setting is not ours."""
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


def socket_address(text: str) -> Optional[str]:
    """The address to send to: a path as given, `@name` as an abstract name (a
    leading NUL); None for anything else (systemd only ever gives these two)."""
    if text.startswith("@") and len(text) > 1:
        return "\0" + text[1:]
    if text.startswith("/"):
        return text
    return None


class Notifier:
    """Sends state lines to `$NOTIFY_SOCKET`; every method is a no-op without one."""

    def __init__(self, address: Optional[str] = None, watchdog_s: Optional[float] = None):
        self.address = address
        self.watchdog_s = watchdog_s if address else None
        self._warned = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Notifier":
        return cls(socket_address(environ.get("NOTIFY_SOCKET", "")),
                   parse_watchdog_s(environ, os.getpid()))

    @property
    def ping_every_s(self) -> Optional[float]:
        """How often to send WATCHDOG=1: half the interval systemd gave."""
        return self.watchdog_s / 2 if self.watchdog_s else None

    def ready(self, status: str) -> None:
        self.send("READY=1\nSTATUS=%s" % status)

    def status(self, status: str) -> None:
        self.send("STATUS=%s" % status)

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1\nSTATUS=%s" % status)

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def send(self, message: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(1.0)   # a full queue must not block the service
                sock.sendto(message.encode("utf-8"), self.address)
        except OSError as e:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@"),
                            e.strerror or e)
