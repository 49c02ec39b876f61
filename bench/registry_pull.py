"""Registry pull: N hosts pulling one multi-layer image through `dfly daemon`
mirrors vs the same N pulling straight from the registry, in the same run.

Each host is a `dfly daemon` process (the built zipapp) with its own data dir,
all sharing one fresh supernode; the clients are N concurrent `skopeo copy`s,
each through its own host's daemon via a registries.conf mirror. The upstream
is Debian's docker-registry; its access log gives the bytes it sent for blobs
(registry egress). Targets: egress / image size near 1.00 through the mirrors
(each layer leaves the registry once) against N.00 straight, at a wall time
not far off the direct pull.

    python3 bench/registry_pull.py            # 4 hosts, 4 layers x 64 MiB, 3 runs
    python3 bench/registry_pull.py --quick    # 4 hosts, 4 layers x 8 MiB, 1 run
"""
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import harness
from harness import MiB

sys.path.insert(0, os.path.join(harness.REPO, "tests"))
from registry import MISSING, Registry, build_image, dir_layers, mirror_conf, pull, push  # noqa: E402

NAME = "registry_pull"
REPO_NAME = "bench/app"


def main() -> int:
    p = harness.base_parser(NAME, __doc__)
    p.add_argument("--layer-size", type=harness.parse_size, help="bytes per layer (default 64M; quick 8M)")
    p.add_argument("--layers", type=int, default=4, help="layers in the image (default 4)")
    p.add_argument("--hosts", type=int, default=4, help="daemons pulling at once (default 4)")
    args = p.parse_args()
    if MISSING:
        print("registry_pull: " + MISSING)
        return 2
    layer = args.layer_size or (8 * MiB if args.quick else 64 * MiB)
    runs = args.runs or (1 if args.quick else 3)
    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        registry = Registry(ws.dir("registry"))
        try:
            image = build_image(ws.dir("layout"), "v1", layer_sizes=(layer,) * args.layers,
                                arches=("amd64",))
            push(image, registry, REPO_NAME)
            size = image.size_of("amd64") + sum(s for d, s in image.blob_sizes.items()
                                                if d not in image.layers["amd64"]
                                                and d not in image.manifests.values()
                                                and d != image.index_digest)
            results = []
            for r in range(runs):
                mirrored = run_mirrored(ws, registry, image, args.hosts, r)
                direct = run_direct(ws, registry, image, args.hosts, r)
                results.append({"mirrored": mirrored, "direct": direct})
                print("run %d: via daemons %.2fs, egress %.2f x image; straight %.2fs, egress %.2f x image"
                      % (r, mirrored["wall_s"], mirrored["egress_bytes"] / size,
                         direct["wall_s"], direct["egress_bytes"] / size))
        finally:
            registry.stop()
    med = harness.median
    summary = {"image_bytes": size, "hosts": args.hosts, "layers": args.layers,
               "mirrored_wall_s": med([r["mirrored"]["wall_s"] for r in results]),
               "direct_wall_s": med([r["direct"]["wall_s"] for r in results]),
               "mirrored_egress_ratio": med([r["mirrored"]["egress_bytes"] / size for r in results]),
               "direct_egress_ratio": med([r["direct"]["egress_bytes"] / size for r in results]),
               "all_verified": all(r["mirrored"]["verified"] and r["direct"]["verified"] for r in results)}
    print("median of %d: %d hosts, %s image: daemons %.2fs at %.2f x egress; straight %.2fs at %.2f x"
          % (runs, args.hosts, harness.human(size), summary["mirrored_wall_s"],
             summary["mirrored_egress_ratio"], summary["direct_wall_s"], summary["direct_egress_ratio"]))
    harness.save(args, NAME, {"summary": summary, "runs": results})
    return 0 if summary["all_verified"] else 1


def _pull_all(ws, registry, image, confs, tag):
    registry.settle()   # its access log is read on a thread: every line in before counting
    before = registry.blob_bytes()
    outs = [ws.dir("%s-out%d" % (tag, i)) for i in range(len(confs))]
    started = time.perf_counter()
    with ThreadPoolExecutor(len(confs), thread_name_prefix="pull") as pool:
        done = list(pool.map(lambda io: pull(io[0], registry, REPO_NAME, "v1", io[1]), zip(confs, outs)))
    wall = time.perf_counter() - started
    verified = all(dir_layers(out) == image.layers["amd64"] for out in outs) and len(done) == len(confs)
    for out in outs:
        shutil.rmtree(out, ignore_errors=True)
    registry.settle()
    return {"wall_s": wall, "egress_bytes": registry.blob_bytes() - before, "verified": verified}


def run_mirrored(ws, registry, image, hosts, r):
    supernode = harness.Supernode(ws, "supernode-%d" % r)
    daemons = [harness.Daemon(ws, "r%d-host%d" % (r, i), supernode.address, "--registry-mirror", registry.url)
               for i in range(hosts)]
    try:
        confs = [mirror_conf(ws.path("r%d-host%d.conf" % (r, i)), registry, d.address)
                 for i, d in enumerate(daemons)]
        return _pull_all(ws, registry, image, confs, "r%d-mirrored" % r)
    finally:
        for d in daemons:
            d.stop()
        supernode.stop()


def run_direct(ws, registry, image, hosts, r):
    conf = mirror_conf(ws.path("r%d-direct.conf" % r), registry, registry.host)
    return _pull_all(ws, registry, image, [conf] * hosts, "r%d-direct" % r)


if __name__ == "__main__":
    sys.exit(main())
