"""`dfly validate` on real files under tmp_path: one compiler-style line per problem, on
the right line, exit 1 on any error; --live against real loopback listeners."""
import json
import os
import socket

import pytest
from certs import Certs
from helpers import QuietHandler, Serving, refused_address, send_body

from dfly import cli

try:
    import tomllib
except ImportError:   # Python before 3.11
    tomllib = None


def run(capsys, *argv):
    """(exit code, the lines printed) of `dfly validate ARGV`, but for the warning that
    the data dir's disk has less free than the default --cache-size (20G): a fact
    about the test machine's disk, not the file (tests/unit/test_config_checks.py
    has it; a cache_size the file gives is still checked here)."""
    code = cli.main(["validate"] + [str(a) for a in argv])
    out, err = capsys.readouterr()
    assert err == ""
    return code, [line for line in out.splitlines() if not line.endswith("(the default)")]


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def settings_file(path, **values) -> str:
    """One key per line, the first on line 2."""
    return write(path, "{\n" + ",\n".join("  %s: %s" % (json.dumps(k), json.dumps(v))
                                          for k, v in values.items()) + "\n}\n")


def test_a_good_file_prints_nothing_and_exits_0(tmp_path, capsys):
    good = settings_file(tmp_path / "daemon.json", listen="127.0.0.1:65001", data_dir=str(tmp_path / "d"),
                         supernode=["127.0.0.1:8002"], cache_size="1G")
    assert run(capsys, good) == (0, [])


def test_each_error_is_one_line_on_the_line_of_its_key(tmp_path, capsys):
    text = """{
  "listen": "127.0.0.1:7000",
  "cache_sise": "1G",
  "total_rate_limit": "10M",
  "upload_rate_limit": "20 M",
  "parallel": 0,
  "upload_listen": "0.0.0.0:7000",
  "registry_mirror": "registry.example:5000",
  "proxy_rule": [
    "p2p \\\\.iso$",
    "p2p (unclosed",
    "direct \\\\.iso$"
  ],
  "supernode": ["127.0.0.1:8002"],
  "upload_rate_limit": "30M",
  "heartbeat_s": "soon"
}
"""
    path = write(tmp_path / "bad.json", text)
    code, out = run(capsys, "--kind", "daemon", path)
    assert code == 1
    where = [line.split(": ")[0] + ": " + line.split(": ")[1] for line in out]
    assert where == [path + ":3: error", path + ":6: error", path + ":7: error", path + ":8: error",
                     path + ":11: error", path + ":12: error", path + ":15: error",
                     path + ":15: warning", path + ":16: error"], out
    assert "unknown setting 'cache_sise' (did you mean 'cache_size'?)" in out[0]
    assert "--upload-rate-limit 30M is above --total-rate-limit 10M" in out[6]
    assert "'upload_rate_limit' is given more than once" in out[7]
    assert "not a duration: 'soon'" in out[8]


def test_a_syntax_error_says_line_and_column(tmp_path, capsys):
    path = write(tmp_path / "sn.json", '{\n  "listen": ":8002"\n  "cache_size": "1G"\n}\n')
    assert run(capsys, path) == (1, [path + ":3:3: error: not valid JSON: Expecting ',' delimiter"])


@pytest.mark.skipif(tomllib is None, reason="TOML needs Python 3.11+")
def test_a_toml_file_is_checked_with_its_lines(tmp_path, capsys):
    path = write(tmp_path / "supernode.toml", '# a supernode\nlisten = "127.0.0.1:8002"\n'
                 'cache_size = "lots"\ncluster = ["127.0.0.2:8002"]\ncluster_secret = "%s"\n' % ("s" * 32))
    code, out = run(capsys, path)
    assert code == 1
    assert out[0].startswith(path + ":3: error: bad value for --cache-size: not a size")
    assert out[1].startswith(path + ":4: error: this supernode's address 127.0.0.1:8002")


def test_warnings_alone_exit_0(tmp_path, capsys):
    path = settings_file(tmp_path / "get.json", seed_for_s=0, data_dir=str(tmp_path))
    code, out = run(capsys, path)
    assert code == 0 and len(out) == 1 and out[0].startswith(path + ":2: warning: --seed-for 0")


def test_several_files_are_each_reported_and_one_bad_one_fails_the_run(tmp_path, capsys):
    good = settings_file(tmp_path / "a.json", cluster=[], data_dir=str(tmp_path))
    bad = settings_file(tmp_path / "b.json", cluster=[], max_uploads=-1, data_dir=str(tmp_path))
    code, out = run(capsys, good, bad)
    assert code == 1 and len(out) == 1 and out[0].startswith(bad + ":3: error: bad value for --max-uploads")


@pytest.mark.parametrize("raw, says", [
    (b"", "the file is empty"), (b"\x7fELF\x02\x01\x01\x00\xff\xff", "not UTF-8"),
    (b"[]", "must be a JSON object"), (b'{"a": ' * 50000, "nested too deeply"),
], ids=["empty", "binary", "list", "deep"])
def test_a_file_that_is_not_settings_is_one_line(tmp_path, capsys, raw, says):
    path = tmp_path / "x.json"
    path.write_bytes(raw)
    code, out = run(capsys, "--kind", "daemon", path)
    assert code == 1 and len(out) == 1 and says in out[0] and out[0].startswith(str(path) + ":1")


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path, capsys):
    path = tmp_path / "huge.json"
    with open(str(path), "wb") as f:
        f.truncate(1 << 30)   # sparse: costs no disk
    code, out = run(capsys, "--kind", "supernode", path)
    assert code == 1 and "too large for a settings file" in out[0]


def test_a_missing_file_and_an_unknown_program_are_errors(tmp_path, capsys):
    code, out = run(capsys, tmp_path / "nope.json")
    assert code == 1 and "cannot read config file" in out[0]
    vague = settings_file(tmp_path / "dfly.json", listen=":8002")
    code, out = run(capsys, vague)
    assert code == 1 and out == [vague + ":1: error: cannot tell which program this file is for: "
                                         "pass --kind supernode, daemon or get"]
    assert run(capsys, "--kind", "supernode", vague)[0] == 0


def test_data_dirs_are_checked_and_nothing_is_created(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    uncreatable = settings_file(tmp_path / "1.json", cluster=[], data_dir=str(blocker / "dfly"))
    not_a_dir = settings_file(tmp_path / "2.json", cluster=[], data_dir=str(blocker))
    too_small = settings_file(tmp_path / "3.json", cluster=[], data_dir=str(tmp_path / "new" / "dfly"),
                              cache_size="100000T")
    before = sorted(os.listdir(str(tmp_path)))
    code, out = run(capsys, uncreatable, not_a_dir, too_small)
    assert code == 1
    assert out[0] == uncreatable + ":3: error: data dir %s does not exist and cannot be created" % (
        blocker / "dfly")
    assert out[1] == not_a_dir + ":3: error: data dir %s is not a directory" % blocker
    new = tmp_path / "new" / "dfly"
    assert out[2].startswith(too_small + ":4: error: the disk of data dir %s has " % new)
    assert out[2].endswith("free, less than --cache-size 100000T")
    assert sorted(os.listdir(str(tmp_path))) == before and blocker.read_text() == "x"


def test_tls_files_that_cannot_be_read_are_errors(tmp_path, capsys):
    path = settings_file(tmp_path / "sn.json", cluster=[], data_dir=str(tmp_path),
                         tls_cert=str(tmp_path / "host.crt"), tls_key=str(tmp_path / "host.key"))
    (tmp_path / "host.key").write_text("key")
    code, out = run(capsys, path)
    assert code == 1 and out == [path + ":4: error: --tls-cert %s cannot be read" % (tmp_path / "host.crt")]


# --live ----------------------------------------------------------------------------------

class _Registry(QuietHandler):
    def do_GET(self):
        send_body(self, b"", 401 if self.path == "/v2/" else 404)


@pytest.fixture
def registry():
    with Serving(_Registry, "fake-registry") as serving:
        yield "http://" + serving.address


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel does) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield "127.0.0.1:%d" % sock.getsockname()[1]
    sock.close()


def test_live_reports_what_did_not_answer(tmp_path, capsys, supernode, registry, silent_port):
    with refused_address() as (host, port):
        refused = "%s:%d" % (host, port)
        path = settings_file(tmp_path / "daemon.json", listen=silent_port, upload_listen="127.0.0.1:0",
                             data_dir=str(tmp_path / "d"), registry_mirror=registry,
                             supernode=[supernode.address, refused, silent_port])
        code, out = run(capsys, "--live", path)
    assert code == 1
    assert out[0].startswith(path + ":2: error: cannot listen on %s: " % silent_port)
    assert out[1].startswith(path + ":6: error: supernode %s: did not answer /healthz: " % refused)
    assert out[2].startswith(path + ":6: error: supernode %s: did not answer /healthz: " % silent_port)
    assert len(out) == 3   # the live supernode and the registry (401 at /v2/) answered


@pytest.mark.time_limit(40)
def test_live_reports_a_registry_that_does_not_answer_v2(tmp_path, capsys, supernode, silent_port):
    path = settings_file(tmp_path / "daemon.json", listen="127.0.0.1:0", supernode=[supernode.address],
                         registry_mirror="http://%s" % silent_port, data_dir=str(tmp_path / "d"))
    code, out = run(capsys, "--live", path)
    assert code == 1 and out == [path + ":4: error: registry http://%s: did not answer /v2/: timed out"
                                 % silent_port]


def test_live_asks_the_other_cluster_members(tmp_path, capsys, supernode):
    with refused_address() as (host, port):
        me = "%s:%d" % (host, port)   # free to bind once the refusing socket is closed below
    path = settings_file(tmp_path / "sn.json", listen=me, cluster=[me, supernode.address],
                         cluster_secret="s" * 32, data_dir=str(tmp_path / "d"))
    assert run(capsys, "--live", path) == (0, [])
    supernode.stop()
    code, out = run(capsys, "--live", path)
    assert code == 1 and out[0].startswith(path + ":3: error: supernode %s: did not answer /healthz"
                                           % supernode.address)


def test_live_is_not_tried_on_a_file_with_errors(tmp_path, capsys, silent_port):
    path = settings_file(tmp_path / "daemon.json", listen=silent_port, parallel=0,
                         registry_mirror="http://%s" % silent_port)
    code, out = run(capsys, "--live", path)
    errors = [line for line in out if ": error: " in line]
    assert code == 1 and len(errors) == 1 and "--parallel" in errors[0]
    assert out[-1] == path + ":1: warning: --live checks not tried: the file has errors"



def test_live_asks_a_tls_supernode_as_a_client_of_the_cluster_would(tmp_path, capsys, supernode_factory):
    certs = Certs(str(tmp_path / "certs"))
    secure = supernode_factory(tls_ca=certs.ca, **certs.host("sn"))
    trusting = settings_file(tmp_path / "a.json", listen="127.0.0.1:0", supernode=[secure.address],
                             registry_mirror="http://127.0.0.1:9", tls_ca=certs.ca)
    plain = settings_file(tmp_path / "b.json", listen="127.0.0.1:0", supernode=[secure.address],
                          registry_mirror="http://127.0.0.1:9")
    code, out = run(capsys, "--live", "--kind", "daemon", trusting, plain)
    assert code == 1
    supernode_lines = [line for line in out if "/healthz" in line]
    assert supernode_lines == [plain + ":3: error: supernode %s: answered /healthz with status 400"
                               % secure.address]


# at start ----------------------------------------------------------------------------------

def _start_args(command, config, *flags):
    from dfly.cli import build_parser
    extra = ["http://127.0.0.1:9/x", "-o", "out"] if command == "get" else []
    return build_parser(only=command, with_file=True).parse_args(
        [command] + extra + ["--config", str(config)] + list(flags))


def test_at_start_a_flag_replaces_the_files_key_and_its_line(tmp_path):
    import io

    from dfly import validate
    config = settings_file(tmp_path / "daemon.json", supernode=["127.0.0.1"], parallel=0)
    with pytest.raises(ValueError) as refused:
        validate.at_start(config, "daemon", _start_args("daemon", config, "--parallel", "2"))
    assert str(refused.value) == (config + ":2: bad value for --supernode: '127.0.0.1' is not "
                                  "HOST:PORT of a supernode (as in 10.0.0.5:8002)")
    args = _start_args("daemon", config, "--parallel", "2", "--supernode", "127.0.0.1:0:1")
    with pytest.raises(ValueError) as refused:
        validate.at_start(config, "daemon", args)
    assert str(refused.value).startswith("bad value for --supernode: '127.0.0.1:0:1'")
    err = io.StringIO()
    args = _start_args("daemon", config, "--parallel", "2", "--supernode", "127.0.0.1:8002",
                       "--advertise", "127.0.0.1")
    assert validate.at_start(config, "daemon", args, err) == json.loads(open(config).read())
    assert err.getvalue() == ("dfly: warning: --advertise 127.0.0.1 is a loopback address: no other "
                              "host can reach this one there\n")


def _udp_and_tcp_port():
    """Sockets holding one port number on ::1 for UDP and for TCP, as a gossip member
    binds it: held both, no other test's socket holds the TCP one when the port is
    to be free again (it did once, on a busy machine)."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        udp.bind(("::1", 0))
        tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            tcp.bind(("::1", udp.getsockname()[1]))
            return udp, tcp
        except OSError:
            udp.close()
            tcp.close()
    raise AssertionError("no port free for both UDP and TCP on ::1")


def test_live_binds_the_gossip_address_as_the_member_would(tmp_path, capsys):
    key = tmp_path / "gossip.key"
    key.write_text("a cluster key of more than sixteen characters\n")
    taken, also = _udp_and_tcp_port()
    port = taken.getsockname()[1]
    try:
        path = settings_file(tmp_path / "sn.json", listen="[::1]:0", gossip=True,
                             gossip_key_file=str(key), gossip_listen="[::1]:%d" % port,
                             advertise="[::1]:8002", data_dir=str(tmp_path / "d"))
        code, out = run(capsys, "--live", "--kind", "supernode", path)
    finally:
        taken.close()
        also.close()
    errors = [line for line in out if ": error: " in line]
    assert code == 1 and len(errors) == 1, out
    assert errors[0].startswith(path + ":5: error: cannot listen on [::1]:%d: " % port), out
    assert run(capsys, "--live", "--kind", "supernode", path)[0] == 0   # free again
