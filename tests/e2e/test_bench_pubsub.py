"""bench/pubsub.py at its smallest, so it cannot rot: a tiny image published into
two subscribed daemons and pulled cold by two others; the registry sends each
blob once in both cases."""
import json
import os
import subprocess
import sys

import pytest
from registry import MISSING

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(bool(MISSING), reason=MISSING or "ok")
@pytest.mark.time_limit(150)
def test_pubsub_benchmark_publishes_into_subscribed_daemons_at_one_image_of_egress(pyz, tmp_path):
    out = tmp_path / "pubsub.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "pubsub.py"), "--size", "2M",
                           "--hosts", "2", "--jitter", "0s", "--pyz", pyz, "--tmp", str(tmp_path),
                           "--out", str(out)], capture_output=True, text=True, timeout=140)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(out.read_text())["summary"]
    assert summary["all_verified"]
    assert summary["publish_egress_ratio"] == summary["cold_egress_ratio"] == 1.0
