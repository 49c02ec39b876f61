"""The zipapp's supernode and daemon under a stand-in for systemd: this test binds
the AF_UNIX datagram socket systemd would pass as $NOTIFY_SOCKET and reads what
the programs say (READY=1 once the port accepts, STATUS=, WATCHDOG=1, STOPPING=1)."""
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from helpers import healthy, wait_until  # noqa: E402

WAIT_S = 30
SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)   # Linux's value; the socket module lacks it


class FakeSystemd:
    """The receiving end of $NOTIFY_SOCKET: a path, or an abstract name (`@...`)."""

    def __init__(self, path: str = "", abstract: bool = False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # The kernel stamps each datagram as it is sent: when the program said it, however
        # late this test reads it (a loaded machine reads queued pings all at once).
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        self.sent_at = 0.0   # of the last message read
        if abstract:
            name = "dfly-test-%s" % uuid.uuid4().hex
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            self.sock.bind(path)
            self.env_value = path

    def next_message(self, timeout_s: float = WAIT_S) -> dict:
        self.sock.settimeout(timeout_s)
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(16))
        for level, kind, value in ancillary:
            if (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMP):
                seconds, micros = struct.unpack("ll", value[:16])
                self.sent_at = seconds + micros / 1e6
        return dict(line.split("=", 1) for line in data.decode().splitlines())

    def wait_for(self, key: str, timeout_s: float = WAIT_S) -> dict:
        """The first message holding `key`, with the messages before it; bounded."""
        deadline = time.monotonic() + timeout_s
        seen = []
        while time.monotonic() < deadline:
            message = self.next_message(max(0.1, deadline - time.monotonic()))
            seen.append(message)
            if key in message:
                return {"message": message, "before": seen[:-1], "sent_at": self.sent_at}
        raise AssertionError("no %s within %ss; got %r" % (key, timeout_s, seen))

    def close(self) -> None:
        self.sock.close()


def _start(pyz, systemd, *args, watchdog_usec=None):
    env = dict(os.environ, NOTIFY_SOCKET=systemd.env_value)
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    return subprocess.Popen([sys.executable, pyz, *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _address_in(status: str):
    """(host, port) from 'supernode serving on 127.0.0.1:PORT ...'."""
    host, port = status.split(" serving on ")[1].split(" ")[0].rsplit(":", 1)
    return host, int(port)


def _stop(proc) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(20)


@pytest.mark.time_limit(90)
def test_supernode_and_daemon_report_ready_only_when_their_port_accepts_and_stopping_on_sigterm(
        pyz, tmp_path):
    systemd = FakeSystemd(str(tmp_path / "notify"))
    supernode = daemon = None
    try:
        supernode = _start(pyz, systemd, "supernode", "--listen", "127.0.0.1:0",
                           "--data-dir", str(tmp_path / "sn"))
        ready = systemd.wait_for("READY")
        assert [m["STATUS"] for m in ready["before"]] == ["supernode starting (data in %s)"
                                                          % (tmp_path / "sn")]
        address = _address_in(ready["message"]["STATUS"])
        # checked the moment READY=1 arrives, with no retry: the port must accept already
        assert healthy(address)
        supernode_address = "%s:%d" % address
        # a second one on the same port never listens: it must never say READY=1
        taken = _start(pyz, systemd, "supernode", "--listen", supernode_address,
                       "--data-dir", str(tmp_path / "sn2"))
        assert taken.wait(WAIT_S) == 2
        said = systemd.wait_for("STATUS")["message"]
        assert said == {"STATUS": "supernode starting (data in %s)" % (tmp_path / "sn2")}
        daemon = _start(pyz, systemd, "daemon", "--listen", "127.0.0.1:0", "--upload-listen",
                        "127.0.0.1:0", "--supernode", supernode_address,
                        "--data-dir", str(tmp_path / "d"))
        ready = systemd.wait_for("READY")
        assert ready["message"]["STATUS"].startswith("daemon serving on ")
        assert healthy(_address_in(ready["message"]["STATUS"]))
        daemon.send_signal(signal.SIGTERM)
        stopping = systemd.wait_for("STOPPING")
        assert stopping["message"]["STATUS"] == "daemon stopping"
        # Waited for, not signalled again: a second SIGTERM that lands while the
        # interpreter exits (its handlers back to the default) killed it (-15).
        assert daemon.wait(20) == 0
        supernode.send_signal(signal.SIGTERM)
        assert systemd.wait_for("STOPPING")["message"]["STATUS"] == "supernode stopping"
        assert supernode.wait(20) == 0
    finally:
        for proc in (daemon, supernode):
            if proc is not None:
                _stop(proc)
        systemd.close()


@pytest.mark.time_limit(60)
def test_watchdog_pings_arrive_at_half_the_interval_over_an_abstract_socket(pyz, tmp_path):
    systemd = FakeSystemd(abstract=True)
    supernode = None
    try:
        supernode = _start(pyz, systemd, "supernode", "--listen", "127.0.0.1:0",
                           "--data-dir", str(tmp_path / "sn"), watchdog_usec=600000)
        ready = systemd.wait_for("READY")
        pings = [systemd.wait_for("WATCHDOG", timeout_s=10) for _ in range(4)]
        elapsed = pings[-1]["sent_at"] - ready["sent_at"]   # as sent, not as read
        assert all(p["message"]["WATCHDOG"] == "1" for p in pings)
        # four pings at 0.3 s each need at least ~0.9 s; generous upper bound for a busy host
        assert 0.6 < elapsed < 10
        supernode.send_signal(signal.SIGTERM)
        systemd.wait_for("STOPPING")
        assert supernode.wait(20) == 0   # (not signalled twice: see above)
    finally:
        if supernode is not None:
            _stop(supernode)
        systemd.close()


@pytest.mark.time_limit(60)
def test_when_systemd_stops_listening_the_supernode_warns_once_and_keeps_serving(pyz, tmp_path):
    systemd = FakeSystemd(str(tmp_path / "notify"))
    proc = _start(pyz, systemd, "supernode", "--listen", "127.0.0.1:0",
                  "--data-dir", str(tmp_path / "sn"), watchdog_usec=200000)
    try:
        address = _address_in(systemd.wait_for("READY")["message"]["STATUS"])
        systemd.close()   # the watchdog pings now fail: the service must carry on
        log = tmp_path / "sn" / "logs" / "supernode.log"

        def warned():
            assert proc.poll() is None, "the supernode stopped"
            return "cannot notify systemd" in log.read_text()
        wait_until(warned, timeout=WAIT_S)
        # the pings (every 0.1 s) keep failing: one line said so, and the supernode serves
        assert healthy(address)
        assert log.read_text().count("cannot notify systemd") == 1
    finally:
        assert _stop(proc) == 0
