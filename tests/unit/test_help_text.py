"""Help that reads like a finished tool: defaults in the units the flags take, real
lists, choices, metavars that say what a flag takes, required settings required."""
import argparse
import dataclasses
import re

import pytest

from dfly import cli, options
from dfly.bench.config import BenchConfig
from dfly.peer.config import PeerConfig
from dfly.peer.daemon_config import DaemonConfig
from dfly.supernode.config import SupernodeConfig

CONFIGS = [SupernodeConfig, PeerConfig, DaemonConfig, BenchConfig]
GiB = 1 << 30


def _help(command: str) -> str:
    parser = cli.build_parser(only=command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command].format_help()


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_default_shown_is_what_the_flag_takes_back(cls):
    parsers = {"size": options.parse_size, "duration": options.parse_duration}
    for f in dataclasses.fields(cls):
        shown = options.shown_default(f)
        kind = f.metadata.get("kind", "")
        if shown and kind in parsers:
            assert parsers[kind](shown) == f.default, (f.name, shown)
            assert "." not in shown or kind == "duration" and shown.endswith("ms"), (f.name, shown)


def test_sizes_and_durations_are_written_in_flag_units():
    assert options.format_size(20 * GiB) == "20G"
    assert options.format_size(4096) == "4K" and options.format_size(1000) == "1000"
    assert [options.format_duration(s) for s in (300.0, 30.0, 604800, 1.5, 0.0, 0.25)] == \
        ["5m", "30s", "7d", "1.5s", "0", "250ms"]


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_each_command_help_has_a_description_exit_codes_and_plain_metavars(command):
    text = _help(command)
    assert cli.COMMANDS[command][0][1:] in " ".join(text.split())
    assert "exit codes: 0 " in text
    for word in ("MAX_CONNECTIONS", "PARALLEL", "DATA_DIR", "PEERS", "WAVES", "IDENTIFIER", "LOG_LEVEL",
                 " VALUE"):
        assert word not in text, (command, word)
    assert "['" not in text and "21474836480" not in text and "300.0" not in text, text
    assert "(http or https)" not in text, "ftp, s3 and file sources are read too"
    assert not re.search(r"^  [a-z_]+  ", text, re.M), "positional arguments are named as metavars"
    for line in text.splitlines():
        assert line.count("(repeatable)") <= 1


def test_defaults_choices_and_required_read_as_a_user_types_them():
    supernode, get, daemon, bench = (_help(c) for c in ("supernode", "get", "daemon", "bench"))
    assert "(default: 20G)" in supernode and "(default: 20G)" in daemon
    assert "(default: 5m)" in get.replace("\n", " ")
    assert "{debug,info,warning,error}" in supernode and "{debug,info,warning,error}" in daemon
    assert "--tls-client-auth {none,optional,require}" in get and "--tls-min-version {1.2,1.3}" in get
    usage = bench.split("\n\n")[0]
    assert "--supernode HOST:PORT" in usage and "[--supernode" not in usage
    assert "(default: p2p /blobs/sha256:[0-9a-f]{64})" in " ".join(daemon.split())


def test_a_required_setting_may_come_from_the_config_file(tmp_path):
    assert options.build(BenchConfig, {"supernode": "127.0.0.1:1"}).supernode == "127.0.0.1:1"
    parser = cli.build_parser(only="bench", with_file=True)
    args = parser.parse_args(["bench", "http://127.0.0.1:1/f", "--config", str(tmp_path / "c.json")])
    assert args.supernode is None


def test_a_choice_outside_the_list_is_refused_in_the_config_file_too():
    with pytest.raises(ValueError, match="--log-level"):
        options.build(SupernodeConfig, {"log_level": "loud"})
    assert options.build(SupernodeConfig, {"log_level": "WARNING"}).log_level == "warning"
