"""bench/proxy_origin.py at its smallest, so it cannot rot: a few concurrent
`curl -x` clients through the daemon's proxy, and the origin's count lands in
the JSON (1 HEAD, 1 GET per task)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.time_limit(120)
def test_proxy_origin_benchmark_counts_origin_requests_per_task(tmp_path):
    out = tmp_path / "proxy_origin.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "proxy_origin.py"), "--runs", "1",
                           "--clients", "8", "--size", "1M", "--origin", "python", "--tmp", str(tmp_path),
                           "--out", str(out)], capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["summary"]["all_ok"]
    assert [(r["origin_heads"], r["origin_gets"]) for r in result["runs"]] == [(1, 1)]
