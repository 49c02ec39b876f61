"""bench/startup.py at its smallest, so it cannot rot: both archives start on every
Python found, and the figures land in the JSON."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.time_limit(120)
def test_startup_benchmark_measures_both_archives_on_this_python(pyz, tmp_path):
    out = tmp_path / "startup.json"
    # The session's zipapp (built as the bench builds one; test_bench_proxy_origin has it build its own)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "startup.py"), "--runs", "1",
                           "--pyz", pyz, "--tmp", str(tmp_path), "--out", str(out)],
                          capture_output=True, text=True, timeout=110)

    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {row["python"]: row for row in json.loads(out.read_text())["rows"]}
    mine = rows["%d.%d" % sys.version_info[:2]]
    for key in ("before_cpu_ms", "now_cpu_ms", "before_wall_ms", "now_wall_ms"):
        assert mine[key] > 0
    assert mine["cpu_ratio"] == round(mine["now_cpu_ms"] / mine["before_cpu_ms"], 3)
    assert "CPU ms: before / now" in proc.stdout
