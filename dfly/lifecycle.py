"""How a long-running dfly program runs: logs under its data dir, serving until
SIGINT or SIGTERM, then a clean stop; SIGHUP calls `running.hangup()` (TLS
certificates loaded again). The supernode and the daemon share it.

Log lines are text for people, or with `--log-format json` one JSON object a
line (time, level, logger, message, and any `extra` fields) for a log shipper.
"""
import json
import logging
import os
import select
import signal
import threading
import time
from typing import Optional

from dfly.options import option

log = logging.getLogger("dfly")


LOG_FORMATS = ("text", "json")


def log_format_option(what: str = "log lines"):
    """The config field every long-running program has."""
    return option("text", "%s as text, or as one JSON object a line (time, level, logger, "
                  "message, extra fields)" % what, choices=LOG_FORMATS)


def log_to(data_dir: str, level: str, name: str, log_format: str = "text") -> None:
    """Log to stderr and to DATA_DIR/logs/NAME.log."""
    logs = os.path.join(data_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    fmt = formatter(log_format, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger("dfly")
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for handler in (logging.StreamHandler(), logging.FileHandler(os.path.join(logs, name + ".log"))):
        handler.setFormatter(fmt)
        handler.addFilter(RedactUrls())
        root.addHandler(handler)


def formatter(log_format: str, text_format: str) -> logging.Formatter:
    return JsonLines() if log_format == "json" else logging.Formatter(text_format)


# What every LogRecord has: anything else on a record came as `extra=` and is shown.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonLines(logging.Formatter):
    """One JSON object per record: time (UTC, RFC 3339), level, logger, message,
    the process, then the record's extra fields; a traceback as `exc_info`."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": _utc(record.created), "level": record.levelname.lower(),
                 "logger": record.name, "message": record.getMessage(), "pid": record.process}
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _utc(created: float) -> str:
    return "%s.%03dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)),
                         int(created * 1000) % 1000)


class RedactUrls(logging.Filter):
    """Log lines show URLs without their secrets (a signed URL's query, userinfo):
    logs are read by more people than the URLs were meant for (protocol/redact.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from dfly.protocol.redact import redact_urls_in
        message = record.getMessage()
        shown = redact_urls_in(message)
        if shown != message:
            record.msg, record.args = shown, ()
        for key, value in list(vars(record).items()):   # `extra=` fields go out as JSON too
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact_urls_in(value))
        return True


_signalled = set()
_wake_fds = []   # (read end, write end) of the pipe signal.set_wakeup_fd writes to


def _note(sig, frame) -> None:
    # Only a set: a handler that takes a lock (Event.set does) deadlocks when a second
    # signal interrupts it, or interrupts this thread inside that Event's own code (a
    # daemon was seen stuck so, ignoring SIGTERM). The wakeup fd does the waking.
    _signalled.add(sig)


def catch_signals() -> None:
    """Take SIGINT, SIGTERM and SIGHUP from now on (a program calls this before it
    starts its listeners): one that comes before the serving loop waits for it,
    instead of killing the process with the default action."""
    _signalled.clear()
    if not _wake_fds:
        _wake_fds.extend(os.pipe())
        for fd in _wake_fds:
            os.set_blocking(fd, False)
    _drain()
    # Whichever thread the kernel hands a signal to, C writes its number here at once,
    # which wakes the loop's select, so the Python handler runs here promptly.
    signal.set_wakeup_fd(_wake_fds[1])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _note)


def _drain() -> None:
    try:
        while os.read(_wake_fds[0], 4096):
            pass
    except OSError:   # empty (BlockingIOError): all read
        pass


def _wait_for_signal(timeout_s: Optional[float]) -> None:
    """Until a signal's byte arrives on the wakeup fd, or timeout_s (None: no timeout)."""
    try:
        select.select([_wake_fds[0]], [], [], timeout_s)
    except (OSError, ValueError):
        pass
    _drain()


def serve_until_signalled(running, name: str, ready: Optional[threading.Event] = None,
                          notifier=None, status: str = "") -> int:
    """Block until SIGINT or SIGTERM, then `running.stop()`; the exit code. On
    SIGHUP, `running.hangup()` runs here, in this thread, not in the handler.
    `notifier` (notify.Notifier) tells systemd: READY=1 now that the listeners
    accept, WATCHDOG=1 from this loop (a wedged loop stops the pings), STOPPING=1."""
    from dfly.notify import Notifier
    notifier = notifier or Notifier()
    if signal.getsignal(signal.SIGTERM) is not _note:
        catch_signals()
    signalled = _signalled
    if ready is not None:
        ready.set()
    notifier.ready(status or "%s running" % name)
    ping_every_s = notifier.ping_every_s
    next_ping = time.monotonic()
    while not signalled & {signal.SIGINT, signal.SIGTERM}:
        if ping_every_s and time.monotonic() >= next_ping:
            notifier.watchdog()
            next_ping = time.monotonic() + ping_every_s
        # The wakeup fd ends this wait at once, whichever thread got the signal, so
        # the only deadline is the watchdog's next beat: idle, the thread sleeps.
        _wait_for_signal(max(0.0, next_ping - time.monotonic()) if ping_every_s else None)
        if signal.SIGHUP in signalled:
            signalled.discard(signal.SIGHUP)
            notifier.status("SIGHUP: loading TLS certificates again")
            getattr(running, "hangup", lambda: None)()
            notifier.status(status or "%s running" % name)
    log.info("%s stopping", name)
    notifier.stopping("%s stopping" % name)
    running.stop()
    return 0
