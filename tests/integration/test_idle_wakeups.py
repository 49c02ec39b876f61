"""An idle supernode or daemon sleeps until there is work or a real deadline.

Each thread's wait is read off its stack (sys._current_frames) while it waits:
the timeout it passed is the most it can sleep. A thread that polls a queue or
a flag shows a short timeout there; one that waits for work shows None (stop
wakes it); one with a real deadline (a janitor's round, a heartbeat) shows that
period. Nothing here depends on timing. docs/BENCHMARKS.md counts the same
wake-ups from outside (bench/idle.py).
"""
import os
import signal
import socket
import sys
import threading

import pytest
from daemons import fetch, registry_blob
from helpers import content, wait_until

from dfly.peer.front import TUNNEL_IDLE_S
from dfly.peer.registry import blob_key
from dfly.protocol.address import parse_address
from dfly.protocol.preheat import PreheatRequest
from dfly.protocol.scrub import SCRUB_AGAIN_AFTER_S

NO_TIMEOUT = None
# The waits a thread can block in, and the name of the argument that bounds each.
WAITS = {("threading.py", "wait"): "timeout",             # Condition.wait: Event, Queue, Condition
         ("selectors.py", "select"): "timeout",           # a Listener waiting for a connection
         ("lifecycle.py", "_wait_for_signal"): "timeout_s"}
NOT_WAITING = object()


def wait_timeout(thread: threading.Thread, waits=WAITS):
    """The timeout of the wait `thread` is blocked in (None: none), or NOT_WAITING."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        where = (os.path.basename(frame.f_code.co_filename), frame.f_code.co_name)
        if where in waits:
            timeout = frame.f_locals.get(waits[where])
            return None if timeout is not None and timeout < 0 else timeout   # epoll's "none": -1
        frame = frame.f_back
    return NOT_WAITING


def idle_waits(threads) -> dict:
    """{thread name: its wait's timeout}, once every thread waits."""
    waits = {}

    def all_waiting():
        for t in threads:
            waits[t.name] = wait_timeout(t)
        return all(w is not NOT_WAITING for w in waits.values())
    wait_until(all_waiting, message="every thread waiting: %s" % waits)
    return waits


def started_by(start):
    """The threads `start()` started, and what it returned."""
    before = set(threading.enumerate())
    running = start()
    return [t for t in threading.enumerate() if t not in before], running


@pytest.mark.time_limit(20)
def test_an_idle_supernode_s_threads_wait_for_work_or_their_round(supernode_factory):
    threads, running = started_by(supernode_factory)
    waits = idle_waits(threads)
    real_deadlines = {"supernode-janitor": 1.0}   # its round; the scrub: nothing cached, nothing due
    for name, timeout in waits.items():
        assert timeout == real_deadlines.get(name, NO_TIMEOUT), (
            "%s wakes every %ss while idle (waits: %s)" % (name, timeout, waits))
    assert "preheat-0" in waits and "supernode-http" in waits
    assert "supernode-publications" not in waits   # alone: no cluster member to copy from
    running.preheater.stop()   # the idle workers wait with no timeout: only stop's wake ends them
    assert not any(t.is_alive() for t in threads if t.name.startswith("preheat-"))


@pytest.mark.time_limit(20)
def test_an_idle_daemon_s_threads_wait_for_work_or_their_heartbeat(daemons):
    threads, running = started_by(lambda: daemons.start(heartbeat_s=7.0))
    waits = idle_waits(threads)
    real_deadlines = {"daemon-janitor": 7.0}   # the heartbeat; the scrub: nothing cached, nothing due
    for name, timeout in waits.items():
        assert timeout == real_deadlines.get(name, NO_TIMEOUT), (
            "%s wakes every %ss while idle (waits: %s)" % (name, timeout, waits))
    assert "daemon-janitor" in waits


@pytest.mark.time_limit(30)
def test_a_preheat_sleeps_until_its_fetch_ends_and_a_stop_ends_it_at_once(origin, supernode_factory):
    threads, supernode = started_by(supernode_factory)
    workers = [t for t in threads if t.name.startswith("preheat-")]
    preheater = supernode.preheater
    holds = [threading.Event(), threading.Event()]
    files = [origin.add("held%d.bin" % i, content(64 << 10, seed=i)) for i in range(2)]
    for f, hold in zip(files, holds):
        origin.fault(f.name, hold=hold)   # the origin answers only when let go
    try:
        first = int(preheater.submit(PreheatRequest("file", files[0].url, {}), "127.0.0.1")[0]["v1"]["ID"])
        assert _a_worker_waits_for_its_task(workers) > 60   # not a look every 0.1 s
        holds[0].set()   # the fetch ends: that wakes the job
        wait_until(lambda: preheater.view(first)["state"] == "SUCCESS", message="the first preheat done")
        preheater.submit(PreheatRequest("file", files[1].url, {}), "127.0.0.1")
        _a_worker_waits_for_its_task(workers)
        preheater.stop()   # wakes the worker waiting for the task, as well as the idle one
        assert not any(t.is_alive() for t in workers)
    finally:
        for hold in holds:
            hold.set()


def _a_worker_waits_for_its_task(workers) -> float:
    """The timeout of the wait of the worker running a job (the other waits for none)."""
    return wait_until(lambda: max([w for w in map(wait_timeout, workers)
                                   if w is not NOT_WAITING and w is not None] or [0.0]),
                      message="a preheat worker waiting for its task")


@pytest.mark.time_limit(30)
def test_a_file_cached_is_scrubbed_at_once_and_then_not_before_the_next_round(
        origin, supernode_factory, daemons):
    sn_threads, supernode = started_by(supernode_factory)
    threads, holder = started_by(lambda: daemons.start(supernode=[supernode.address],
                                                       registry_mirror=origin.url("").rstrip("/")))
    data = content(256 << 10, seed=5)
    _, path, digest = registry_blob(origin, data)
    assert fetch(holder.address, "GET", path)[2] == data
    # The daemon's scrub is woken by the file's arrival (not by a look every few seconds);
    # the supernode's copy was hashed as it was written. Both then sleep until it is due.
    wait_until(lambda: blob_key(digest) in holder.scrubber.checked, message="the daemon's scrub")
    assert supernode.service.scrubber.checked
    scrubs = [t for t in sn_threads + threads if t.name.endswith("-scrub")]
    assert [t.name for t in scrubs] == ["supernode-scrub", "daemon-scrub"]
    for thread in scrubs:
        timeout = wait_until(lambda t=thread: _until_next_round(wait_timeout(t)),
                             message="%s asleep until the next round: %s" % (thread.name,
                                                                              wait_timeout(thread)))
        assert timeout <= SCRUB_AGAIN_AFTER_S


def _until_next_round(timeout):
    """A wait's timeout when it ends about when the file is due again (else 0.0: falsy)."""
    return timeout if timeout not in (NOT_WAITING, None) and timeout > SCRUB_AGAIN_AFTER_S - 60 else 0.0


@pytest.mark.time_limit(30)
def test_an_idle_connect_tunnel_sleeps_until_its_idle_deadline_and_a_stop_ends_it(origin, daemons):
    running = daemons.start(proxy_rule=["direct ."])
    with socket.create_connection(parse_address(running.address, 0), timeout=10) as sock:
        target = "127.0.0.1:%d" % origin.address[1]
        sock.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        tunnel = wait_until(lambda: [t for t in threading.enumerate() if _in_tunnel(t)],
                            message="the tunnel's thread")[0]
        timeout = wait_until(lambda: wait_timeout(tunnel) not in (NOT_WAITING, None)
                             and (wait_timeout(tunnel),), message="the tunnel waiting")[0]
        assert TUNNEL_IDLE_S - 60 < timeout <= TUNNEL_IDLE_S, "the idle tunnel wakes every %ss" % timeout
        daemons.stop(running)   # shuts the client's connection: that wakes the tunnel at once
        tunnel.join(10)
        assert not tunnel.is_alive()


def _in_tunnel(thread: threading.Thread) -> bool:
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == "_tunnel":
            return True
        frame = frame.f_back
    return False


class FakeNotifier:
    """systemd's side of a watchdog: only the interval matters here."""
    ping_every_s = 30.0

    def ready(self, status): pass
    def status(self, status): pass
    def watchdog(self): pass
    def stopping(self, status): pass


@pytest.mark.time_limit(20)
@pytest.mark.parametrize("notifier, deadline", [(None, NO_TIMEOUT), (FakeNotifier(), 30.0)])
def test_the_serving_loop_sleeps_until_a_signal_or_the_watchdog_s_beat(notifier, deadline):
    from dfly.lifecycle import catch_signals, serve_until_signalled
    main, seen = threading.current_thread(), []

    def loop_wait():   # only the serving loop's own wait (not Thread.start's, say)
        return wait_timeout(main, {("lifecycle.py", "_wait_for_signal"): "timeout_s"})

    def watch():   # reads the loop's wait, then stops it
        try:
            seen.append(wait_until(lambda: loop_wait() is not NOT_WAITING and (loop_wait(),)))
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    class Running:
        def stop(self):
            pass
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    watcher = threading.Thread(target=watch, name="test-watcher", daemon=True)
    try:
        catch_signals()
        watcher.start()
        assert serve_until_signalled(Running(), "test", notifier=notifier) == 0
    finally:
        signal.set_wakeup_fd(-1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    watcher.join(10)
    timeout = seen[0][0]
    assert timeout == deadline if deadline is None else 0 < timeout <= deadline
