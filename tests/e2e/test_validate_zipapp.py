"""`dfly validate` and --config at start, through the built zipapp: the README's
example prints what the README shows, every Python 3.8+ here reads JSON (TOML
where tomllib exists), and a bad config at start is one line, exit 2, nothing
created."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import pythons
from processes import Process

README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "README.md")


def dfly(pyz, *args, python=sys.executable, cwd=None):
    return subprocess.run([python, pyz] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def _readme_example():
    """(the settings file, the command, the lines it prints) of README's `dfly validate`."""
    with open(README) as f:
        text = f.read()
    section = text.split("### `dfly validate`", 1)[1].split("\n## ", 1)[0]
    settings = re.search(r"```json\n(.*?)```", section, re.S).group(1)
    console = re.search(r"```console\n(.*?)```", section, re.S).group(1).splitlines()
    return settings, console[0][len("$ "):], console[1:]


def test_the_readme_example_prints_what_the_readme_shows(pyz, tmp_path):
    settings, command, shown = _readme_example()
    assert "/var/lib/dfly" in settings, "the README example no longer uses /var/lib/dfly"
    (tmp_path / "daemon.json").write_text(settings.replace("/var/lib/dfly", str(tmp_path / "data")))
    argv = command.split()
    assert argv[:2] == ["python3", "dfly.pyz"]
    out = dfly(pyz, *argv[2:], cwd=str(tmp_path))
    assert out.returncode == 1 and out.stderr == ""
    assert out.stdout.splitlines() == shown
    assert sorted(os.listdir(str(tmp_path))) == ["daemon.json"]   # nothing created


@pytest.mark.time_limit(120)
def test_every_python_reads_json_and_toml_where_it_can(pyz, tmp_path):
    good = tmp_path / "daemon.json"
    good.write_text(json.dumps({"supernode": ["127.0.0.1:8002"], "data_dir": str(tmp_path),
                                "cache_size": "1G"}))
    toml = tmp_path / "supernode.toml"
    toml.write_text('listen = "127.0.0.1:8002"\ncache_size = "lots"\n')
    for version, python in sorted(pythons.FOUND.items()):
        out = dfly(pyz, "validate", "--kind", "daemon", good, python=python)
        assert (out.returncode, out.stdout, out.stderr) == (0, "", ""), version
        out = dfly(pyz, "validate", toml, python=python)
        assert out.returncode == 1 and "Traceback" not in out.stderr, (version, out.stderr)
        if int(version.split(".")[1]) >= 11:
            # among the lines: the default data dir's disk may have less free than the
            # default --cache-size, a warning on line 1 (a fact about the machine)
            assert any(line.startswith("%s:2: error: bad value for --cache-size" % toml)
                       for line in out.stdout.splitlines()), (version, out.stdout)
        else:
            assert out.stdout == "%s:1: error: a TOML settings file needs Python 3.11+ (tomllib); " \
                                 "use JSON here\n" % toml, version


@pytest.mark.parametrize("command", ["supernode", "daemon", "get"])
def test_a_bad_config_at_start_is_one_line_exit_2_and_nothing_is_created(pyz, tmp_path, command):
    data = tmp_path / "data"
    config = tmp_path / ("%s.json" % command)
    config.write_text('{\n  "data_dir": "%s",\n  "parallel": 2,\n  "max_uploads": 0,\n'
                      '  "seed_for_s": "5 minutes"\n}\n' % data)
    extra = ["http://127.0.0.1:9/x", "-o", tmp_path / "out", "--no-daemon"] if command == "get" else []
    out = dfly(pyz, command, *extra, "--config", config)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dfly: error: %s:" % config), out.stderr
    assert "more: `dfly validate %s` lists them" % config in lines[0]
    assert not data.exists() and not (tmp_path / "out").exists()


def test_a_flag_beside_the_config_is_checked_with_it(pyz, tmp_path):
    config = tmp_path / "daemon.json"
    config.write_text('{\n  "listen": "127.0.0.1:0",\n  "upload_listen": "127.0.0.1:7000"\n}\n')
    out = dfly(pyz, "daemon", "--config", config, "--listen", "127.0.0.1:7000",
               "--data-dir", tmp_path / "data")
    assert out.returncode == 2
    assert out.stderr == ("dfly: error: %s:3: --listen 127.0.0.1:7000 and --upload-listen "
                          "127.0.0.1:7000 are one port: only one can listen there\n" % config)
    assert not (tmp_path / "data").exists()


def test_a_config_with_warnings_only_starts_and_says_them(pyz, tmp_path):
    config = tmp_path / "supernode.json"
    config.write_text('{\n  "listen": "127.0.0.1:0",\n  "advertise": "127.0.0.1:8002",\n'
                      '  "data_dir": "%s"\n}\n' % (tmp_path / "data"))
    running = Process(pyz, "supernode", "--config", str(config))
    try:
        assert running.lines[0] == ("dfly: %s:3: warning: --advertise 127.0.0.1:8002 is a loopback "
                                    "address: no other host can reach this one there\n" % config)
        assert running.proc.poll() is None   # it runs
    finally:
        running.stop()   # (a SIGTERM right after "listening on" may come before its handler)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root and unshare (util-linux) for a read-only mount of its own")
def test_a_data_dir_on_a_read_only_disk_is_an_error_even_for_root(pyz, tmp_path):
    mounted = tmp_path / "ro"
    mounted.mkdir()
    inside = tmp_path / "inside.json"
    inside.write_text('{\n  "cluster": [],\n  "data_dir": "%s"\n}\n' % (mounted / "dfly"))
    itself = tmp_path / "itself.json"
    itself.write_text('{\n  "cluster": [],\n  "data_dir": "%s"\n}\n' % mounted)
    script = "mount -t tmpfs -o ro tmpfs %s && exec %s %s validate %s %s" % (
        mounted, sys.executable, pyz, inside, itself)
    out = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1, out.stderr
    assert out.stdout.splitlines() == [
        "%s:3: error: data dir %s does not exist and cannot be created" % (inside, mounted / "dfly"),
        "%s:3: error: data dir %s is not writable" % (itself, mounted)]
