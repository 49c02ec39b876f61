"""The TLS settings every program shares: one table, hence the same flags and
config keys everywhere; settings that cannot work are one-line errors; a
refused handshake is told apart from a dead connection by its reason."""
import ssl

import pytest

from dfly import options, tls
from dfly.bench.config import BenchConfig
from dfly.cli import build_parser
from dfly.peer.config import PeerConfig
from dfly.peer.daemon_config import DaemonConfig
from dfly.supernode.config import SupernodeConfig

FLAGS = ["--tls-cert", "--tls-key", "--tls-ca", "--tls-client-auth", "--tls-min-version",
         "--tls-ciphers", "--tls-server-name"]


@pytest.mark.parametrize("command", ["supernode", "get", "daemon", "bench"])
def test_every_program_takes_the_same_tls_flags(command, capsys):
    with pytest.raises(SystemExit):
        build_parser(only=command).parse_args([command, "--help"])
    shown = capsys.readouterr().out
    assert [f for f in FLAGS if f not in shown] == []
    assert shown.index("--tls-cert") > shown.index("--data-dir")   # the program's own come first


@pytest.mark.parametrize("cls", [SupernodeConfig, PeerConfig, DaemonConfig, BenchConfig])
def test_tls_settings_are_config_keys_of_every_program(cls):
    config = options.build(cls, {"tls-cert": "a.crt", "tls_key": "a.key", "tls_ca": "ca.crt",
                                 "tls_client_auth": "require"})
    assert tls.options_of(config) == dict(tls.options_of(tls.TLSOptions()), tls_cert="a.crt",
                                          tls_key="a.key", tls_ca="ca.crt", tls_client_auth="require")
    assert tls.enabled(config) and not tls.enabled(cls())


@pytest.mark.parametrize("settings, message", [
    (dict(tls_client_auth="always"), "--tls-client-auth"),
    (dict(tls_min_version="1.1"), "--tls-min-version"),
    (dict(tls_cert="a.crt"), "go together"),
    (dict(tls_key="a.key"), "go together"),
    (dict(tls_cert="a.crt", tls_key="a.key", tls_client_auth="require"), "needs --tls-ca"),
    (dict(tls_cert="a.crt", tls_key="a.key", tls_client_auth="optional"), "needs --tls-ca"),
])
def test_settings_that_cannot_work_are_refused_naming_the_flag(settings, message):
    with pytest.raises(ValueError, match=message):
        tls.check(tls.TLSOptions(**settings))


def _alert(reason):
    error = ssl.SSLError(1, "[SSL: %s] handshake refused" % reason)
    error.reason = reason
    return error


def test_a_refusal_is_told_apart_from_a_dead_connection():
    assert "client certificate" in tls.refusal(_alert("TLSV13_ALERT_CERTIFICATE_REQUIRED"))
    assert "expired" in tls.refusal(_alert("SSLV3_ALERT_CERTIFICATE_EXPIRED"))
    assert "another CA" in tls.refusal(_alert("TLSV1_ALERT_UNKNOWN_CA"))
    assert "does not speak TLS" in tls.refusal(_alert("WRONG_VERSION_NUMBER"))
    assert "TLS version" in tls.refusal(_alert("UNSUPPORTED_PROTOCOL"))
    assert tls.refusal(ssl.SSLEOFError(8, "EOF occurred in violation of protocol")) is None
    assert tls.refusal(ConnectionResetError(104, "reset")) is None
    assert tls.refusal(TimeoutError("timed out")) is None
