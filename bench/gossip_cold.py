"""Cold start in decentralized mode: N daemons of the built zipapp (no supernode),
on 127.0.0.100.. , join one gossip cluster and all `get` one new file at the same
moment. Reported: origin bytes / file size (target <= 1.1: only the task's home
reads the source), the time until the last get finishes, and where the bytes
came from.

    python3 bench/gossip_cold.py                  # 50 daemons, 32 MiB
    python3 bench/gossip_cold.py --daemons 20 --mib 64
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from helpers import wait_until  # noqa: E402
from processes import Process  # noqa: E402

from dfly.demo import CountingOrigin, write_random_file  # noqa: E402


def api(proc, path):
    with urllib.request.urlopen("http://%s%s" % (proc.address, path), timeout=10) as r:
        return json.loads(r.read())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--daemons", type=int, default=50)
    parser.add_argument("--mib", type=int, default=32)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="dfly-gossip-cold-")
    pyz = os.path.join(work, "dfly.pyz")
    subprocess.run([sys.executable, os.path.join(ROOT, "build_zipapp.py"), "-o", pyz], check=True,
                   stdout=subprocess.DEVNULL)
    key = os.path.join(work, "key")
    with open(key, "w") as f:
        f.write("a bench cluster key, long enough\n")
    os.makedirs(os.path.join(work, "origin"))
    origin = CountingOrigin(os.path.join(work, "origin"))
    size = args.mib << 20
    write_random_file(os.path.join(work, "origin", "f.bin"), size)
    daemons = []
    try:
        for i in range(args.daemons):
            host = "127.0.0.%d" % (100 + i)
            join = ["--join", api(daemons[0], "/v1/members")["me"]] if daemons else []
            daemons.append(Process(pyz, "daemon", "--listen", host + ":0", "--data-dir",
                                   os.path.join(work, "d%d" % i), "--registry-mirror", "", "--gossip",
                                   "--gossip-key-file", key, "--gossip-listen", host + ":0",
                                   "--gossip-profile", "fast", "--upload-listen", "127.0.0.1:0", *join))
        wait_until(lambda: all(len([m for m in api(d, "/v1/members")["members"] if m["state"] == "alive"])
                               == args.daemons for d in daemons), timeout=120, message="all joined")
        started = time.monotonic()
        gets = [subprocess.Popen([sys.executable, pyz, "get", origin.url("f.bin"), "-o",
                                  os.path.join(work, "out%d.bin" % i), "--json", "--daemon", d.address,
                                  "--daemon-token", os.path.join(work, "d%d" % i, "daemon", "handoff.token")],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for i, d in enumerate(daemons)]
        results = []
        for g in gets:
            out, err = g.communicate(timeout=900)
            if g.returncode != 0:
                raise SystemExit("a get failed: " + err.strip())
            results.append(json.loads(out))
        elapsed = time.monotonic() - started
        total = {k: sum(r[k] for r in results) for k in ("bytes_from_source", "bytes_from_supernode",
                                                         "bytes_from_peers")}
        print("gossip cold start: %d daemons, %d MiB, no supernode" % (args.daemons, args.mib))
        print("  origin bytes %.3f x the file; last get done after %.1f s"
              % (origin.sent_bytes / size, elapsed))
        print("  bytes received: %.1f MiB from the home schedulers' caches, %.1f MiB from peers, "
              "%.1f MiB straight from the source" % (total["bytes_from_supernode"] / 2 ** 20,
                                                     total["bytes_from_peers"] / 2 ** 20,
                                                     total["bytes_from_source"] / 2 ** 20))
    finally:
        for d in daemons:
            if d.proc.poll() is None:
                d.stop()
        origin.stop()


if __name__ == "__main__":
    main()
