"""`dfly preheat` from the built zipapp against a supernode process: the README's
example, and each documented exit code as a user meets it (one line, no traceback)."""
import json
import subprocess
import sys

import pytest
from helpers import MiB, content
from processes import Process

TOKEN = "e2e-preheat-token"


def _preheat(pyz, *args):
    return subprocess.run([sys.executable, pyz, "preheat"] + list(args), capture_output=True,
                          text=True, timeout=60)


@pytest.mark.time_limit(90)
def test_dfly_preheat_caches_a_file_and_exits_with_the_documented_codes(pyz, origin, tmp_path):
    src = origin.add("big.iso", content(3 * MiB, seed=81))
    token = tmp_path / "preheat.token"
    token.write_text(TOKEN + "\n")
    wrong = tmp_path / "wrong.token"
    wrong.write_text("nope\n")
    supernode = Process(pyz, "supernode", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "sn"),
                        "--preheat-token-file", str(token))
    try:
        done = _preheat(pyz, src.url, "--supernode", supernode.address, "--token-file", str(token),
                        "--json")
        assert done.returncode == 0, done.stderr
        job = json.loads(done.stdout)
        assert job["state"] == "SUCCESS" and job["progress"] == {"done": 1, "total": 1}
        assert "SUCCESS, 1 of 1 files cached" in done.stderr
        assert origin.requests("big.iso") == 1

        missing = _preheat(pyz, origin.url("nothing.iso"), "--supernode", supernode.address,
                           "--token-file", str(token))
        refused = _preheat(pyz, src.url, "--supernode", supernode.address, "--token-file", str(wrong))
        bad = _preheat(pyz, "Not An Image", "--supernode", supernode.address, "--token-file", str(token))
        slow = origin.add("slow.iso", content(3 * MiB, seed=82))
        origin.fault("slow.iso", stall_after=MiB + 5)   # sends a little, then nothing until stopped
        stalled = _preheat(pyz, slow.url, "--supernode", supernode.address, "--token-file", str(token),
                           "--timeout", "2s")
        origin.stop()   # the stalled fetch ends now, not when the supernode's stop gives up on it (5 s)
    finally:
        assert supernode.stop() == 0
    for out, code, words in ((missing, 3, "404"), (refused, 1, "preheat token"),
                             (bad, 2, "not an image reference"),
                             (stalled, 5, "not finished within 2s")):
        assert out.returncode == code, (out.returncode, out.stderr)
        assert words in out.stderr and "Traceback" not in out.stderr
        assert out.stderr.splitlines()[-1].startswith("dfly: error: ")
