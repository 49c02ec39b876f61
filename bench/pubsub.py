"""Publish/subscribe: one 4-layer image published (`dfly publish`) into N daemons
subscribed to its repository, against the same N pulling it at once through
their mirrors without a publish, in the same run.

Everything is the built zipapp as real processes on 127.0.0.1; the upstream is
Debian's docker-registry, whose access log gives the bytes it sent for blobs
(registry egress). The publish is timed from the command's start until every
daemon says (GET /v1/stats, subscription.delivered) that the whole image is in
its cache; the cold case from the pulls' start until the last pull ended.
Targets: registry egress / image size 1.00 for the publish (each blob leaves the
registry once, the daemons get it through P2P), and the publish not slower
than the cold pulls.

    python3 bench/pubsub.py                  # 8 daemons, 256 MiB image, 1 run
    python3 bench/pubsub.py --quick          # 8 daemons, 32 MiB image
    python3 bench/pubsub.py --size 64M --hosts 4 --runs 3
"""
import http.client
import json
import os
import subprocess
import sys
import time

import harness
from harness import MiB
from registry_pull import REPO_NAME, _pull_all

sys.path.insert(0, os.path.join(harness.REPO, "tests"))
from registry import MISSING, Registry, build_image, mirror_conf, push  # noqa: E402

NAME = "pubsub"
TOKEN = "bench-publish-token"
LAYERS = 4


def main() -> int:
    p = harness.base_parser(NAME, __doc__)
    p.add_argument("--size", type=harness.parse_size, help="image size, split in 4 layers "
                   "(default 256M; quick 32M)")
    p.add_argument("--hosts", type=int, default=8, help="subscribed daemons (default 8)")
    p.add_argument("--jitter", default="1s", help="the daemons' --subscribe-jitter (default 1s)")
    args = p.parse_args()
    if MISSING:
        print("pubsub: " + MISSING)
        return 2
    size_wanted = args.size or (32 * MiB if args.quick else 256 * MiB)
    runs = args.runs or 1
    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        registry = Registry(ws.dir("registry"))
        try:
            image = build_image(ws.dir("layout"), "v1", layer_sizes=(size_wanted // LAYERS,) * LAYERS,
                                arches=("amd64",))
            push(image, registry, REPO_NAME)
            size = sum(s for d, s in image.blob_sizes.items()
                       if d not in image.manifests.values() and d != image.index_digest)
            results = []
            for r in range(runs):
                published = run_published(ws, registry, image, args.hosts, args.jitter, "r%d-pub" % r)
                cold = run_cold(ws, registry, image, args.hosts, "r%d-cold" % r)
                results.append({"published": published, "cold": cold})
                print("run %d: publish into %d daemons %.2fs at %.2f x egress; cold pulls %.2fs at %.2f x"
                      % (r, args.hosts, published["wall_s"], published["egress_bytes"] / size,
                         cold["wall_s"], cold["egress_bytes"] / size))
        finally:
            registry.stop()
    med = harness.median
    summary = {"image_bytes": size, "hosts": args.hosts, "layers": LAYERS, "jitter": args.jitter,
               "publish_s": med([r["published"]["wall_s"] for r in results]),
               "publish_preheat_s": med([r["published"]["preheat_s"] for r in results]),
               "publish_egress_ratio": med([r["published"]["egress_bytes"] / size for r in results]),
               "cold_pulls_s": med([r["cold"]["wall_s"] for r in results]),
               "cold_egress_ratio": med([r["cold"]["egress_bytes"] / size for r in results]),
               "all_verified": all(r["published"]["verified"] and r["cold"]["verified"] for r in results)}
    print("median of %d: %d daemons, %s image: publish until all hold it %.2fs (its preheat %.2fs) at "
          "%.2f x egress; cold pulls %.2fs at %.2f x"
          % (runs, args.hosts, harness.human(size), summary["publish_s"], summary["publish_preheat_s"],
             summary["publish_egress_ratio"], summary["cold_pulls_s"], summary["cold_egress_ratio"]))
    harness.save(args, NAME, {"summary": summary, "runs": results})
    return 0 if summary["all_verified"] else 1


def run_published(ws, registry, image, hosts, jitter, tag):
    token = ws.path(tag + ".token")
    with open(token, "w") as f:
        f.write(TOKEN)
    supernode = harness.Supernode(ws, tag + "-supernode", extra=["--preheat-token-file", token])
    topic = "%s/%s" % (registry.host, REPO_NAME.split("/")[0] + "/*")
    daemons = []
    try:
        daemons = [harness.Daemon(ws, "%s-host%d" % (tag, i), supernode.address, "--registry-mirror",
                                  registry.url, "--subscribe", topic, "--subscribe-jitter", jitter,
                                  "--subscribe-poll", "5s") for i in range(hosts)]
        harness.wait_until(lambda: _subscribers(supernode.address) == hosts, 30, "every daemon subscribed")
        registry.settle()   # its access log is read on a thread: every line in before counting
        before = registry.blob_bytes()
        started = time.perf_counter()
        subprocess.run([sys.executable, ws.pyz, "publish", "%s/%s:v1" % (registry.host, REPO_NAME),
                        "--plain-http", "--supernode", supernode.address, "--token-file", token],
                       check=True, timeout=600, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        preheat_s = time.perf_counter() - started
        harness.wait_until(lambda: all(_delivered(d.address) >= 1 for d in daemons), 600,
                           "every daemon holding the image", step_s=0.05)
        wall = time.perf_counter() - started
        verified = all(_holds(d, image) for d in daemons)
        registry.settle()
        return {"wall_s": wall, "preheat_s": preheat_s, "egress_bytes": registry.blob_bytes() - before,
                "verified": verified}
    finally:
        for d in daemons:
            d.stop()
        supernode.stop()


def run_cold(ws, registry, image, hosts, tag):
    supernode = harness.Supernode(ws, tag + "-supernode")
    daemons = []
    try:
        daemons = [harness.Daemon(ws, "%s-host%d" % (tag, i), supernode.address,
                                  "--registry-mirror", registry.url) for i in range(hosts)]
        confs = [mirror_conf(ws.path("%s-host%d.conf" % (tag, i)), registry, d.address)
                 for i, d in enumerate(daemons)]
        return _pull_all(ws, registry, image, confs, tag)
    finally:
        for d in daemons:
            d.stop()
        supernode.stop()


def _get(address: str, path: str) -> dict:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _subscribers(supernode: str) -> int:
    return len(_get(supernode, "/v1/subscriptions")["subscriptions"])


def _delivered(daemon: str) -> int:
    return (_get(daemon, "/v1/stats").get("subscription") or {}).get("delivered", 0)


def _holds(daemon, image) -> bool:
    """Every blob of the image in the daemon's cache, each matching its digest."""
    for digest in list(image.layers["amd64"]):
        path = os.path.join(daemon.data_dir, "daemon", "cache", digest.replace(":", "-"))
        if not os.path.exists(path) or "sha256:" + harness.sha256_file(path) != digest:
            return False
    return True


if __name__ == "__main__":
    sys.exit(main())
