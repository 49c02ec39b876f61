"""The CLI's settings: flags and config file come from one table."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def dfly(*args, cwd):
    return subprocess.run([sys.executable, "-m", "dfly"] + list(args), capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=dict(os.environ, PYTHONPATH=ROOT))


def test_every_supernode_setting_is_a_flag(tmp_path):
    out = dfly("supernode", "--help", cwd=str(tmp_path))
    assert out.returncode == 0
    for flag in ("--listen", "--advertise", "--data-dir", "--source-rate-limit", "--cache-size",
                 "--max-uploads-per-peer", "--peer-ttl", "--config"):
        assert flag in out.stdout


def test_get_help_lists_the_documented_flags(tmp_path):
    out = dfly("get", "--help", cwd=str(tmp_path))
    for flag in ("--supernode", "--data-dir", "--digest", "--header", "--filter", "--rate-limit",
                 "--timeout", "--no-back-source", "--seed-for", "--json", "--advertise"):
        assert flag in out.stdout


def test_get_builds_and_imports_no_other_commands_settings(tmp_path):
    code = ("import sys; from dfly.cli import build_parser; "
            "build_parser(only='get').parse_args(['get', 'http://127.0.0.1/x', '-o', 'x']); "
            "print(' '.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert "dfly.peer.config" in loaded
    for other in ("dfly.supernode.config", "dfly.peer.daemon_config", "dfly.bench.config",
                  "dfly.supernode.scheduler", "uuid"):
        assert other not in loaded


def test_the_command_list_names_every_command_and_each_has_its_flags(tmp_path):
    listed = dfly("--help", cwd=str(tmp_path)).stdout
    for command, flag in (("supernode", "--max-uploads"), ("get", "--seed-for"), ("demo", "--peers"),
                          ("daemon", "--registry-mirror"), ("bench", "--peers")):
        assert command in listed
        assert flag in dfly(command, "--help", cwd=str(tmp_path)).stdout


@pytest.mark.parametrize("settings, message", [
    ({"cache_sise": "1G"}, "unknown setting 'cache_sise'"),
    ({"cache_size": "lots"}, "bad value for --cache-size"),
])
def test_a_bad_config_file_is_refused_with_the_setting_named(tmp_path, settings, message):
    config = tmp_path / "sn.json"
    config.write_text(json.dumps(settings))
    out = dfly("supernode", "--config", str(config), "--data-dir", str(tmp_path / "d"), cwd=str(tmp_path))
    assert out.returncode == 2
    assert message in out.stderr


def test_a_bad_header_flag_is_a_usage_error(origin, tmp_path):
    out = dfly("get", origin.url("never-fetched"), "-o", str(tmp_path / "x"), "--header", "no colon",
               "--data-dir", str(tmp_path), cwd=str(tmp_path))
    assert out.returncode == 2
    assert origin.arrived("never-fetched") == 0
    assert "--header must look like" in out.stderr
