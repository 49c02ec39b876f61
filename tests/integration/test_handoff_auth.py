"""The daemon's hand-off (`POST /v1/downloads`) as an attacker on this host, a web
page or a remote client of the daemon's proxy would try it: only the holder of
the daemon's token, sending what `dfly get` sends, gets a file written; `get`
sends nothing to a listener that cannot prove it knows the token."""
import json
import os
import stat

import pytest
from daemons import handoff_client
from helpers import MiB, QuietHandler, Serving, content, raw_exchange, send_body, sha256_file, status_of

from dfly import cli, errors
from dfly.protocol.handoff import HandoffRequest


def _post(running, output: str, url: str, target: str = "/v1/downloads", **headers) -> int:
    """One raw hand-off request to `running`'s front port; its status."""
    body = json.dumps({"url": url, "output": output}).encode()
    fields = {"Host": "127.0.0.1", "Content-Type": "application/json",
              "Authorization": "Bearer " + running.handoff_token}
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    lines = ["POST %s HTTP/1.1" % target, "Connection: close", "Content-Length: %d" % len(body)]
    lines += ["%s: %s" % kv for kv in fields.items() if kv[1] is not None]
    host, port = running.address.rsplit(":", 1)
    return status_of(raw_exchange((host, int(port)), ("\r\n".join(lines) + "\r\n\r\n").encode() + body))


@pytest.mark.time_limit(30)
def test_a_handoff_with_the_token_writes_the_file(origin, daemons, downloads):
    src = origin.add("ok.bin", content(MiB, seed=61))
    running = daemons.start()
    assert _post(running, str(downloads / "ok.bin"), src.url) == 200
    assert sha256_file(str(downloads / "ok.bin")) == src.sha256


@pytest.mark.time_limit(30)
@pytest.mark.parametrize("change, status", [
    ({"Authorization": None}, 401),                                   # no token
    ({"Authorization": "Bearer " + "0" * 64}, 401),                    # a wrong one
    ({"Content_Type": "text/plain"}, 415),                            # a form a page can send
    ({"Origin": "http://evil.example"}, 403),                         # a browser's request
    ({"Sec_Fetch_Mode": "no-cors"}, 403),
    ({"Host": "evil.example:65001"}, 403),                            # DNS rebinding
    ({"Via": "1.1 someproxy"}, 403),                                  # came through a proxy
])
def test_a_handoff_that_is_not_dfly_gets_writes_nothing(origin, daemons, downloads, change, status):
    src = origin.add("f.bin", content(MiB, seed=62))
    running = daemons.start()
    assert _post(running, str(downloads / "f.bin"), src.url, **change) == status
    assert os.listdir(str(downloads)) == []
    assert origin.requests("f.bin") == 0


@pytest.mark.time_limit(30)
def test_the_daemons_own_proxy_never_reaches_its_handoff(origin, daemons, downloads):
    src = origin.add("p.bin", content(MiB, seed=63))
    running = daemons.start()
    # an absolute-URI request naming the daemon itself, even with the right token
    for name in ("127.0.0.1", "localhost"):
        url = "http://%s:%s/v1/downloads" % (name, running.address.rsplit(":", 1)[1])
        assert _post(running, str(downloads / "p.bin"), src.url, target=url) == 403
    # a tunnel to itself
    host, port = running.address.rsplit(":", 1)
    reply = raw_exchange((host, int(port)), ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                                             % (running.address, running.address)).encode())
    assert status_of(reply) == 403
    assert os.listdir(str(downloads)) == []
    assert origin.requests("p.bin") == 0


@pytest.mark.time_limit(30)
def test_a_missing_output_directory_is_a_clear_error_before_any_download(origin, daemons, downloads,
                                                                          capsys):
    src = origin.add("m.bin", content(MiB, seed=64))
    running = daemons.start()
    missing = str(downloads / "no" / "such" / "m.bin")
    with pytest.raises(errors.LocalIOError) as caught:
        handoff_client(running).download(HandoffRequest(src.url, missing), 10)
    assert "output directory %s does not exist" % os.path.dirname(missing) in str(caught.value)
    assert _post(running, missing, src.url) == 400   # the caller's mistake, not a full disk (507)
    code = cli.main(["get", "-q", src.url, "-o", missing, "--daemon", running.address,
                     "--daemon-token", running.handoff_token_path])
    assert code == 6
    assert "output directory" in capsys.readouterr().err
    assert origin.requests("m.bin") == 0
    assert not os.path.exists(str(downloads / "no"))


@pytest.mark.time_limit(30)
def test_a_handoff_naming_a_descriptor_of_the_caller_is_refused_before_any_download(
        origin, daemons):
    # /dev/stdout or a shell's /dev/fd/63 are the caller's: in the daemon they are its own
    src = origin.add("fd.bin", content(MiB, seed=65))
    running = daemons.start()
    for named in ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/2"):
        with pytest.raises(errors.LocalIOError, match="names a descriptor"):
            handoff_client(running).download(HandoffRequest(src.url, named), 10)
        assert _post(running, named, src.url) == 400
    assert origin.requests("fd.bin") == 0


@pytest.mark.time_limit(30)
def test_a_handoff_into_a_fifo_nobody_reads_gives_up_with_the_get_and_writes_nothing_later(
        origin, daemons, downloads):
    src = origin.add("fifo.bin", content(MiB, seed=66))
    running = daemons.start()
    fifo = str(downloads / "pipe")
    os.mkfifo(fifo)
    with pytest.raises(errors.DownloadTimeout, match="nothing read from %s" % fifo):
        handoff_client(running).download(HandoffRequest(src.url, fifo, timeout_s=1.0), 10)
    # The daemon stopped waiting for a reader: one coming now finds no writer (an empty
    # read, at once), not a daemon thread still blocked in open() that writes the file.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert os.read(reader, 65536) == b""
    finally:
        os.close(reader)


def test_the_token_file_is_for_the_daemons_user_only_and_goes_with_it(daemons):
    running = daemons.start()
    mode = stat.S_IMODE(os.stat(running.handoff_token_path).st_mode)
    assert mode == 0o600
    with open(running.handoff_token_path) as f:
        assert f.read().strip() == running.handoff_token
    daemons.stop(running)
    assert not os.path.exists(running.handoff_token_path)


@pytest.fixture
def squatter():
    """A listener that answers the probe like a daemon but knows no token, and records
    every request it gets."""
    seen = []

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, body: bytes) -> None:
            seen.append((self.command, self.path, dict(self.headers)))
            send_body(self, body, 200, {"X-Dfly-Proof": "0" * 64})

        def do_GET(self):
            self._answer(b'{"peer_id": "x"}')

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._answer(b"{}")

    with Serving(Handler, "test-squatter") as serving:
        yield serving.address, seen


@pytest.mark.time_limit(30)
def test_get_hands_nothing_to_a_listener_that_cannot_prove_the_token(origin, daemons, downloads,
                                                                     squatter, capsys):
    src = origin.add("s.bin", content(MiB, seed=65))
    address, seen = squatter
    running = daemons.start()   # a real daemon's token, which the squatter does not know
    code = cli.main(["get", src.url, "-o", str(downloads / "s.bin"), "--daemon", address,
                     "--daemon-token", running.handoff_token_path, "--seed-for", "0",
                     "--header", "Authorization: Bearer secret"])
    assert code == 0
    assert sha256_file(str(downloads / "s.bin")) == src.sha256
    assert [method for method, _, _ in seen] == ["GET"]   # the probe only: no headers, no token
    assert "does not know the token" in capsys.readouterr().err


@pytest.mark.time_limit(30)
def test_get_without_a_readable_token_downloads_alone(origin, daemons, downloads, tmp_path, capsys):
    src = origin.add("u.bin", content(MiB, seed=66))
    running = daemons.start()
    code = cli.main(["get", src.url, "-o", str(downloads / "u.bin"), "--daemon", running.address,
                     "--daemon-token", str(tmp_path / "absent.token"), "--seed-for", "0", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["via"] == "source"
    assert sha256_file(str(downloads / "u.bin")) == src.sha256
    assert running.stats()["downloads"] == 0
