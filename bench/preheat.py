"""Preheat: one multi-layer image preheated into a supernode (`dfly preheat`),
then N hosts pulling it through their `dfly daemon` mirrors; against the same N
pulling through mirrors without a preheat, in the same run.

Everything is the built zipapp as real processes on 127.0.0.1; the upstream is
Debian's docker-registry, whose access log gives the bytes it sent for blobs
(registry egress). Targets: registry egress / image size 1.00 in both cases,
all of it during the preheat (0 during the pulls after it), and the pulls after
a preheat faster than the cold ones.

    python3 bench/preheat.py            # 4 hosts, 4 layers x 64 MiB, 3 runs
    python3 bench/preheat.py --quick    # 4 hosts, 4 layers x 8 MiB, 1 run
"""
import os
import subprocess
import sys
import time

import harness
from harness import MiB
from registry_pull import REPO_NAME, _pull_all

sys.path.insert(0, os.path.join(harness.REPO, "tests"))
from registry import MISSING, Registry, build_image, mirror_conf, push  # noqa: E402

NAME = "preheat"
TOKEN = "bench-preheat-token"


def main() -> int:
    p = harness.base_parser(NAME, __doc__)
    p.add_argument("--layer-size", type=harness.parse_size, help="bytes per layer (default 64M; quick 8M)")
    p.add_argument("--layers", type=int, default=4, help="layers in the image (default 4)")
    p.add_argument("--hosts", type=int, default=4, help="daemons pulling at once (default 4)")
    args = p.parse_args()
    if MISSING:
        print("preheat: " + MISSING)
        return 2
    layer = args.layer_size or (8 * MiB if args.quick else 64 * MiB)
    runs = args.runs or (1 if args.quick else 3)
    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        registry = Registry(ws.dir("registry"))
        try:
            image = build_image(ws.dir("layout"), "v1", layer_sizes=(layer,) * args.layers,
                                arches=("amd64",))
            push(image, registry, REPO_NAME)
            size = sum(image.blob_sizes[d] for d in image.blob_sizes
                       if d not in image.manifests.values() and d != image.index_digest)
            results = []
            for r in range(runs):
                warm = run(ws, registry, image, args.hosts, "r%d-preheat" % r, preheat=True)
                cold = run(ws, registry, image, args.hosts, "r%d-cold" % r, preheat=False)
                results.append({"preheated": warm, "cold": cold})
                print("run %d: preheat %.2fs at %.2f x egress, then pulls %.2fs at %.2f x; "
                      "without preheat pulls %.2fs at %.2f x"
                      % (r, warm["preheat_s"], warm["preheat_egress_bytes"] / size, warm["wall_s"],
                         warm["egress_bytes"] / size, cold["wall_s"], cold["egress_bytes"] / size))
        finally:
            registry.stop()
    med = harness.median
    summary = {"image_bytes": size, "hosts": args.hosts, "layers": args.layers,
               "preheat_s": med([r["preheated"]["preheat_s"] for r in results]),
               "preheat_egress_ratio": med([r["preheated"]["preheat_egress_bytes"] / size for r in results]),
               "pulls_after_preheat_s": med([r["preheated"]["wall_s"] for r in results]),
               "pulls_after_preheat_egress_ratio": med([r["preheated"]["egress_bytes"] / size
                                                        for r in results]),
               "cold_pulls_s": med([r["cold"]["wall_s"] for r in results]),
               "cold_egress_ratio": med([r["cold"]["egress_bytes"] / size for r in results]),
               "all_verified": all(r["preheated"]["verified"] and r["cold"]["verified"] for r in results)}
    print("median of %d: %d hosts, %s image: preheat %.2fs (%.2f x egress), pulls after it %.2fs "
          "(%.2f x); cold pulls %.2fs (%.2f x)"
          % (runs, args.hosts, harness.human(size), summary["preheat_s"], summary["preheat_egress_ratio"],
             summary["pulls_after_preheat_s"], summary["pulls_after_preheat_egress_ratio"],
             summary["cold_pulls_s"], summary["cold_egress_ratio"]))
    harness.save(args, NAME, {"summary": summary, "runs": results})
    return 0 if summary["all_verified"] else 1


def run(ws, registry, image, hosts, tag, preheat):
    token = ws.path(tag + ".token")
    with open(token, "w") as f:
        f.write(TOKEN)
    supernode = harness.Supernode(ws, tag + "-supernode", extra=["--preheat-token-file", token])
    daemons = []
    try:
        preheat_s, preheat_egress = 0.0, 0
        if preheat:
            registry.settle()   # its access log is read on a thread: every line in before counting
            before = registry.blob_bytes()
            started = time.perf_counter()
            subprocess.run([sys.executable, ws.pyz, "preheat", "%s/%s:v1" % (registry.host, REPO_NAME),
                            "--plain-http", "--supernode", supernode.address, "--token-file", token],
                           check=True, timeout=600, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            preheat_s = time.perf_counter() - started
            registry.settle()
            preheat_egress = registry.blob_bytes() - before
        daemons = [harness.Daemon(ws, "%s-host%d" % (tag, i), supernode.address,
                                  "--registry-mirror", registry.url) for i in range(hosts)]
        confs = [mirror_conf(ws.path("%s-host%d.conf" % (tag, i)), registry, d.address)
                 for i, d in enumerate(daemons)]
        pulled = _pull_all(ws, registry, image, confs, tag)
        return dict(pulled, preheat_s=preheat_s, preheat_egress_bytes=preheat_egress)
    finally:
        for d in daemons:
            d.stop()
        supernode.stop()


if __name__ == "__main__":
    sys.exit(main())
