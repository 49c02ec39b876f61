"""`dfly publish` and `dfly daemon --subscribe` from the built zipapp: the README's
example (two subscribed daemons, one publish, both caches hold the file), and
each documented exit code as a user meets it (one line, no traceback)."""
import json
import os
import subprocess
import sys
import urllib.request

import pytest
from helpers import MiB, content, wait_until
from processes import Process

from dfly.protocol.task import task_id

TOKEN = "e2e-publish-token"


def _dfly(pyz, *args):
    return subprocess.run([sys.executable, pyz] + list(args), capture_output=True, text=True, timeout=60)


def _cached(data_dir: str, url: str) -> str:
    return os.path.join(data_dir, "daemon", "cache", "task-" + task_id(url))


@pytest.mark.time_limit(120)
def test_dfly_publish_reaches_subscribed_daemons_and_exits_with_the_documented_codes(pyz, origin, tmp_path):
    data = content(2 * MiB, seed=91)
    src = origin.add("releases/app.tar", data)
    later = origin.add("releases/app-2.tar", content(MiB, seed=92))
    token = tmp_path / "preheat.token"
    token.write_text(TOKEN + "\n")
    wrong = tmp_path / "wrong.token"
    wrong.write_text("nope\n")
    supernode = Process(pyz, "supernode", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "sn"),
                        "--preheat-token-file", str(token))
    daemons, dirs = [], [str(tmp_path / ("d%d" % i)) for i in range(2)]
    def daemon(folder):
        return Process(pyz, "daemon", "--listen", "127.0.0.1:0", "--upload-listen", "127.0.0.1:0",
                       "--registry-mirror", "", "--supernode", supernode.address,
                       "--data-dir", folder, "--subscribe", origin.url("releases/"),
                       "--subscribe-jitter", "0", "--subscribe-poll", "1s")

    try:
        for folder in dirs:
            daemons.append(daemon(folder))
        done = _dfly(pyz, "publish", src.url, "--supernode", supernode.address, "--token-file", str(token),
                     "--json")
        assert done.returncode == 0, done.stderr
        assert "published as publication 1" in done.stderr
        assert json.loads(done.stdout)["publication"] == 1
        wait_until(lambda: all(os.path.exists(_cached(d, src.url)) for d in dirs), timeout=60)
        with urllib.request.urlopen("http://%s/v1/subscriptions" % supernode.address, timeout=10) as r:
            rows = json.loads(r.read())["subscriptions"]
        assert len(rows) == 2 and all(row["topics"] == [origin.url("releases/")] for row in rows)

        killed = daemons.pop()   # SIGKILL: no goodbye; publish while it is gone; it catches up
        killed.proc.kill()
        killed.proc.wait(10)
        again = _dfly(pyz, "publish", later.url, "--supernode", supernode.address, "--token-file", str(token))
        assert again.returncode == 0, again.stderr
        daemons.append(daemon(dirs[1]))
        wait_until(lambda: all(os.path.exists(_cached(d, later.url)) for d in dirs), timeout=60)

        missing = _dfly(pyz, "publish", origin.url("releases/none.tar"), "--supernode", supernode.address,
                        "--token-file", str(token))
        refused = _dfly(pyz, "publish", src.url, "--supernode", supernode.address, "--token-file", str(wrong))
        bad = _dfly(pyz, "publish", "Not An Image", "--supernode", supernode.address,
                    "--token-file", str(token))
        slow = origin.add("releases/slow.tar", content(3 * MiB, seed=93))
        origin.fault("releases/slow.tar", stall_after=MiB + 5)   # a little, then nothing until stopped
        stalled = _dfly(pyz, "publish", slow.url, "--supernode", supernode.address,
                        "--token-file", str(token), "--timeout", "2s")
        origin.stop()   # the stalled fetch ends now, not when the supernode's stop gives up on it (5 s)
        bad_topic = _dfly(pyz, "daemon", "--listen", "127.0.0.1:0", "--upload-listen", "127.0.0.1:0",
                          "--supernode", supernode.address, "--data-dir", str(tmp_path / "bad"),
                          "--subscribe", "a" + "*a" * 40)
    finally:
        for d in daemons:
            assert d.stop() == 0
        assert supernode.stop() == 0

    for folder in dirs:
        with open(_cached(folder, src.url), "rb") as f:
            assert f.read() == data
    assert origin.requests("releases/app.tar") == 1
    for out, code, words in ((missing, 3, "404"), (refused, 1, "preheat token"),
                             (bad, 2, "not an image reference"), (bad_topic, 2, "--subscribe"),
                             (stalled, 5, "not finished within 2s")):
        assert out.returncode == code, (out.returncode, out.stderr)
        assert words in out.stderr and "Traceback" not in out.stderr
        assert out.stderr.splitlines()[-1].startswith("dfly: error: ")
