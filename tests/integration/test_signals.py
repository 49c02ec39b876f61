"""A long-running program acts on SIGHUP and SIGTERM even when the kernel hands the
signal to one of its other threads (it picks any thread that does not block it)."""
import os
import queue
import signal
import subprocess
import sys
import threading

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Main blocks the signals after starting one thread that does not: the kernel can only
# deliver them there, as it may in a busy supernode or daemon.
PROGRAM = r"""
import signal, sys, threading
sys.path.insert(0, %r)
from dfly.lifecycle import serve_until_signalled   # its loop has no timeout: only the wakeup fd wakes it

class Running:
    def hangup(self):
        print("hangup", flush=True)
    def stop(self):
        print("stopped", flush=True)

threading.Thread(target=threading.Event().wait, daemon=True).start()
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP, signal.SIGTERM})
ready = threading.Event()
threading.Thread(target=lambda: (ready.wait(), print("ready", flush=True)), daemon=True).start()
sys.exit(serve_until_signalled(Running(), "test", ready))
""" % REPO


def _lines(proc):
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in proc.stdout], daemon=True).start()
    return lines


@pytest.mark.time_limit(40)
def test_signals_delivered_to_another_thread_are_acted_on():
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM], stdout=subprocess.PIPE, text=True)
    try:
        lines = _lines(proc)
        assert lines.get(timeout=10) == "ready"
        proc.send_signal(signal.SIGHUP)
        assert lines.get(timeout=10) == "hangup"
        proc.send_signal(signal.SIGTERM)
        assert lines.get(timeout=10) == "stopped"
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.time_limit(20)
def test_a_stop_that_comes_before_the_serving_loop_is_kept_for_it():
    # A supernode logs "listening on" before it serves; whoever reads that line may
    # stop it at once. The handlers are installed first, so the signal waits.
    from dfly.lifecycle import catch_signals, serve_until_signalled
    stopped = []

    class Running:
        def stop(self):
            stopped.append(True)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        catch_signals()
        os.kill(os.getpid(), signal.SIGTERM)
        assert serve_until_signalled(Running(), "test") == 0
        assert stopped == [True]
    finally:
        signal.set_wakeup_fd(-1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
