"""deploy/systemd/: both units pass Debian's `systemd-analyze verify` (no warning
at all) and keep a low `systemd-analyze security` exposure, and their example
settings files are settings dfly accepts. Works without systemd as PID 1: both
commands read the unit files offline."""
import os
import re
import shutil
import subprocess

import pytest

from dfly import options
from dfly.peer.daemon_config import DaemonConfig
from dfly.supernode.config import SupernodeConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNITS = os.path.join(ROOT, "deploy", "systemd")
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(not ANALYZE, reason="needs systemd-analyze (apt-get install systemd)")
MAX_EXPOSURE = 2.0   # systemd's scale: 0 (locked down) .. 10 (UNSAFE); we measured 1.1


def unit_settings(name: str) -> dict:
    """[Service] key -> list of values, as systemd reads a unit (comments and blanks skipped)."""
    settings, section = {}, ""
    with open(os.path.join(UNITS, name)) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            settings.setdefault((section, key), []).append(value)
    return settings


def _verify(path: str, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([ANALYZE, "verify", "--no-pager", path], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


@needs_analyze
@pytest.mark.parametrize("unit", ["dfly-supernode.service", "dfly-daemon.service"])
def test_the_unit_passes_systemd_analyze_verify_without_a_warning(unit, tmp_path):
    shutil.copy(os.path.join(UNITS, unit), str(tmp_path / unit))
    out = _verify("./" + unit, str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout + out.stderr == ""


@needs_analyze
def test_verify_does_complain_about_a_broken_unit(tmp_path):
    """The check above can fail: a typo in the type is reported."""
    text = open(os.path.join(UNITS, "dfly-daemon.service")).read().replace("Type=notify", "Type=notfy")
    (tmp_path / "broken.service").write_text(text)
    out = _verify("./broken.service", str(tmp_path))
    assert "Failed to parse service type" in out.stderr


@needs_analyze
@pytest.mark.parametrize("unit", ["dfly-supernode.service", "dfly-daemon.service"])
def test_the_unit_exposure_stays_low(unit, tmp_path):
    shutil.copy(os.path.join(UNITS, unit), str(tmp_path / unit))
    out = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", "./" + unit],
                         capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    found = re.search(r"Overall exposure level for %s: ([\d.]+)" % re.escape(unit), out.stdout)
    assert found, out.stdout + out.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE


@pytest.mark.parametrize("unit,command", [("dfly-supernode.service", "supernode"),
                                          ("dfly-daemon.service", "daemon")])
def test_the_unit_runs_dfly_as_a_notify_service_with_its_state_dir(unit, command):
    s = unit_settings(unit)
    service = unit.split(".")[0]
    assert s[("Service", "Type")] == ["notify"]
    assert s[("Service", "Restart")] == ["on-failure"]
    assert s[("Service", "DynamicUser")] == ["yes"]
    assert s[("Service", "StateDirectory")] == [service]
    exec_start = s[("Service", "ExecStart")][0].split()
    assert exec_start[1:3] == ["/usr/lib/dfly/dfly.pyz", command]
    assert exec_start[exec_start.index("--data-dir") + 1] == "%S/" + service
    assert s[("Service", "RestrictAddressFamilies")] == ["AF_INET AF_INET6 AF_UNIX"]
    assert s[("Service", "CapabilityBoundingSet")] == [""]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert s[("Service", key)] == ["yes"]
    assert s[("Service", "ProtectSystem")] == ["strict"]


@pytest.mark.parametrize("name,cls", [("supernode.json", SupernodeConfig), ("daemon.json", DaemonConfig)])
def test_the_example_settings_are_settings_dfly_accepts(name, cls):
    config = options.build(cls, options.load_file(os.path.join(UNITS, name)))
    assert config.cache_size > 0
