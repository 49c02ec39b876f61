"""What every dfly listener (dfly.httpd) does whatever app it serves: its
replies carry a correct Date header, it starts without looking any name up,
and it sleeps while no one connects.

http.server's HTTPServer resolves the host's own name when it binds
(socket.getfqdn): on a host whose DNS server does not answer (air-gapped, a
stale resolv.conf) every `dfly get` would wait out the resolver's timeout
before its uploader listens. Here a network namespace gets a resolv.conf
naming a DNS "server" on its own loopback that counts queries and never
answers, and a hosts file without the host's name, so any lookup reaches it.
Needs root (ip netns)."""
import email.utils
import http.client
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

import pytest

from dfly.httpd import Listener, Response

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r"""
import socket, sys
sys.path.insert(0, sys.argv[1])
socket.sethostname("dfly-unlisted-host")
dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dns.bind(("127.0.0.1", 53))
dns.setblocking(False)

from dfly.httpd import Server

class App:
    def route(self, request):
        raise AssertionError("no request is made")

server = Server(("0.0.0.0", 0), App())
server.server_close()
queries = 0
while True:   # a lookup is synchronous: any query was sent before Server() returned
    try:
        dns.recv(4096)
    except BlockingIOError:
        break
    queries += 1
print(queries)
"""


def _why_not() -> str:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (a network namespace with its own resolv.conf)"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return "%s is not installed" % tool
    return ""


@pytest.fixture
def namespace_without_dns():
    name = "dflydns-%s" % uuid.uuid4().hex[:8]
    etc = os.path.join("/etc/netns", name)   # `ip netns exec` mounts these over /etc
    os.makedirs(etc)
    try:
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
        with open(os.path.join(etc, "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n")
        subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
        try:
            subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                           check=True, timeout=10)
            yield name
        finally:
            subprocess.run(["ip", "netns", "delete", name], timeout=10)
    finally:
        shutil.rmtree(etc, ignore_errors=True)


@pytest.mark.skipif(bool(_why_not()), reason=_why_not() or "runs")
@pytest.mark.time_limit(30)
def test_a_listener_binds_without_asking_dns(namespace_without_dns):
    done = subprocess.run(["ip", "netns", "exec", namespace_without_dns, "unshare", "--uts",
                           sys.executable, "-c", CHILD, ROOT],
                          capture_output=True, text=True, timeout=25)

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "0"


class Hello:
    def route(self, request):
        return Response.text("hello")


@pytest.mark.time_limit(10)
def test_every_reply_carries_the_date_it_was_sent():
    listener = Listener("test-listener", ("127.0.0.1", 0), Hello()).start()
    try:
        conn = http.client.HTTPConnection(*listener.address, timeout=5)
        dates = []
        for _ in range(3):   # one connection, kept alive: the date is cached between replies
            before = time.time()
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.read() == b"hello"
            sent = email.utils.parsedate_to_datetime(response.getheader("Date")).timestamp()
            assert int(before) <= sent <= time.time()   # whole seconds, GMT
            dates.append(response.getheader("Date"))
        conn.close()
    finally:
        listener.stop()
    assert all(d.endswith(" GMT") for d in dates)


@pytest.mark.time_limit(10)
def test_a_stopped_listener_answers_no_more_over_a_kept_alive_connection():
    listener = Listener("test-listener", ("127.0.0.1", 0), Hello()).start()
    conn = http.client.HTTPConnection(*listener.address, timeout=5)
    try:
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"hello"
        listener.stop()
        # The same connection (http.client does not reconnect on its own): cut, not served.
        with pytest.raises((http.client.HTTPException, OSError)):
            conn.request("GET", "/")
            conn.getresponse().read()
    finally:
        conn.close()
        listener.stop()


def _voluntary_switches(thread: threading.Thread) -> int:
    """How often `thread` went to sleep so far (Linux's count for one thread)."""
    with open("/proc/self/task/%d/status" % thread.native_id) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches line")


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads Linux's per-thread counts")
@pytest.mark.time_limit(10)
def test_an_idle_listener_sleeps_until_a_connection_or_its_stop():
    # The stdlib's serve_forever woke every 20 ms to look whether to stop: 50 thread
    # switches a second in every get, seeder and supernode, busy or not.
    listener = Listener("test-idle-listener", ("127.0.0.1", 0), Hello()).start()
    accepting = next(t for t in threading.enumerate() if t.name == "test-idle-listener")
    try:
        conn = http.client.HTTPConnection(*listener.address, timeout=5)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"hello"   # it accepted: its loop runs
        conn.close()
        before = _voluntary_switches(accepting)
        threading.Event().wait(0.5)   # a window to count its wake-ups in, not a synchronisation
        assert _voluntary_switches(accepting) - before <= 2
    finally:
        listener.stop()
    assert not accepting.is_alive()   # the stop woke it
