"""TLS: the single get and the 8-get swarm with mutual TLS vs plain HTTP, alternating.

Target: with mutual TLS on every connection, throughput is at least 0.8x that
of plain HTTP, both measured in this run on loopback. The certificates are made
with the `openssl` commands of docs/SECURITY.md (a cluster CA and one host
certificate for 127.0.0.1, ECDSA P-256); every program gets --tls-cert,
--tls-key, --tls-ca and --tls-client-auth require.

Single: one `dfly get` of the file from a supernode's cache (each supernode, the
plain one and the TLS one, fetched it once first); runs alternate plain, TLS.
Swarm: N concurrent `dfly get --seed-for` through a fresh supernode (cold cache),
runs alternate plain, TLS. Handshakes: each TLS supernode logs, when it stops,
how many TLS handshakes it served; set against the pieces it served (one
request each), that is the handshakes per piece (1.0 would be a connection per
piece; kept-alive connections make it a few per get, whatever the file size).
Client CPU (user + system, GNU time) and the supernode's CPU during each single
get show what TLS costs on either end. Handshake cost: --handshakes fresh mutual
TLS connections to the TLS supernode (a full handshake each: its listeners send
no session tickets), wall time and the supernode's CPU per handshake, and what
that adds per piece with the reuse measured above, against one handshake per
piece.

    python3 bench/tls.py             # 1 GiB single and 8 x 256 MiB swarm, 3 runs each
    python3 bench/tls.py --quick     # 128 MiB single and 8 x 32 MiB swarm, 1 run each
    python3 bench/tls.py --only-handshakes   # the handshake cost alone (seconds)
"""
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time

import harness
from harness import MiB

sys.path.insert(0, harness.REPO)
from dfly.protocol.pieces import piece_size_for  # noqa: E402

NAME = "tls"
TARGET_RATIO = 0.8
OPENSSL = shutil.which("openssl") or "openssl"


def make_certs(folder: str) -> dict:
    """The cluster CA and one host certificate, by the commands docs/SECURITY.md shows."""
    def run(*argv):
        subprocess.run([OPENSSL] + list(argv), cwd=folder, check=True, capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650", "-subj", "/CN=dfly cluster CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    with open(os.path.join(folder, "host.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "host.key", "-out", "host.csr", "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", "host.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "host.crt", "-days", "365", "-extfile", "host.ext")
    return {"--tls-cert": os.path.join(folder, "host.crt"), "--tls-key": os.path.join(folder, "host.key"),
            "--tls-ca": os.path.join(folder, "ca.crt"), "--tls-client-auth": "require"}


def flags(tls: dict) -> list:
    return [x for kv in tls.items() for x in kv]


def handshakes_logged(supernode) -> int:
    """The TLS handshakes a stopped supernode says it served (its last log line of them)."""
    with open(supernode.log_path, "rb") as f:
        found = re.findall(rb"served (\d+) TLS handshakes", f.read())
    return int(found[-1]) if found else -1


def main() -> int:
    p = harness.base_parser(NAME, __doc__)
    p.add_argument("--size", type=harness.parse_size, help="single get's file (default 1G; quick 128M)")
    p.add_argument("--swarm-size", type=harness.parse_size, help="swarm's file (default 256M; quick 32M)")
    p.add_argument("--peers", type=int, default=8, help="concurrent gets in the swarm (default 8)")
    p.add_argument("--timeout", type=float, default=600, help="bound on one download, seconds")
    p.add_argument("--handshakes", type=int, default=200, help="fresh handshakes timed (default 200)")
    p.add_argument("--only-handshakes", action="store_true", help="time handshakes only, no gets")
    args = p.parse_args()
    if args.only_handshakes:
        with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
            cost = handshake_cost(ws, make_certs(ws.dir("certs")), args.handshakes)
        print_handshake_cost(cost, None)
        harness.save(args, NAME, {"handshake_cost": cost})
        return 0
    size = args.size or (128 * MiB if args.quick else 1 << 30)
    swarm_size = args.swarm_size or (32 * MiB if args.quick else 256 * MiB)
    runs = args.runs or (1 if args.quick else 3)

    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        tls = make_certs(ws.dir("certs"))
        www = ws.dir("www")
        harness.write_file(os.path.join(www, "single.bin"), size)
        harness.write_file(os.path.join(www, "swarm.bin"), swarm_size)
        wants = {n: harness.sha256_file(os.path.join(www, n)) for n in ("single.bin", "swarm.bin")}
        nginx = harness.Nginx(ws, www)
        single = run_single(ws, nginx.url("single.bin"), size, wants["single.bin"], tls, runs, args)
        swarm = run_swarm(ws, nginx, nginx.url("swarm.bin"), swarm_size, wants["swarm.bin"], tls,
                          runs, args)
        nginx.stop()
        cost = handshake_cost(ws, tls, args.handshakes)

    summary = summarize(single, swarm, size, swarm_size, args.peers)
    print_summary(summary, size, swarm_size, args.peers, runs)
    print_handshake_cost(cost, summary)
    harness.save(args, NAME, {"size": size, "swarm_size": swarm_size, "peers": args.peers,
                              "runs": runs, "summary": summary, "single": single, "swarm": swarm,
                              "handshake_cost": cost})
    return 0 if summary["all_verified"] else 1


def run_single(ws, url, size, want, tls, runs, args) -> dict:
    supernodes = {"plain": harness.Supernode(ws, "single-plain"),
                  "tls": harness.Supernode(ws, "single-tls", extra=flags(tls))}
    out = ws.path("out", "single.bin")
    gets = {"plain": [], "tls": []}

    def get(kind, name):
        harness.settle()
        extra = flags(tls) if kind == "tls" else []
        server_cpu = harness.process_cpu_s(supernodes[kind].proc.pid)
        r = harness.run_timed(ws, harness.get_argv(ws, url, out, supernodes[kind].address,
                                                   ws.dir("client-" + kind), "0", extra),
                              name, args.timeout, gnu_time=True)
        server_cpu = harness.process_cpu_s(supernodes[kind].proc.pid) - server_cpu
        ok = harness.sha256_file(out) == want
        harness.remove(out)
        return {"wall_s": r["wall_s"], "elapsed_s": r["json"]["elapsed_s"], "cpu_s": r.get("cpu_s"),
                "supernode_cpu_s": round(server_cpu, 2),
                "from_supernode": r["json"]["bytes_from_supernode"], "verified": ok}

    for kind in ("plain", "tls"):
        warm = get(kind, "single-warm-" + kind)
        print("single warm-up %s (origin -> supernode -> client): %.2fs" % (kind, warm["wall_s"]))
    for r in range(runs):
        for kind in ("plain", "tls"):
            gets[kind].append(get(kind, "single-%s-%d" % (kind, r)))
        print("single run %d: plain %.2fs (CPU: client %.2fs, supernode %.2fs)   TLS %.2fs (CPU: "
              "client %.2fs, supernode %.2fs)" % (
                  r, gets["plain"][-1]["wall_s"], gets["plain"][-1]["cpu_s"] or 0,
                  gets["plain"][-1]["supernode_cpu_s"], gets["tls"][-1]["wall_s"],
                  gets["tls"][-1]["cpu_s"] or 0, gets["tls"][-1]["supernode_cpu_s"]))
        sys.stdout.flush()
    piece_size = piece_size_for(size)
    for s in supernodes.values():
        s.stop()
    served = size * (runs + 1)   # the warm-up's pieces came from the supernode too
    return {"plain": gets["plain"], "tls": gets["tls"], "piece_size": piece_size,
            "tls_handshakes": handshakes_logged(supernodes["tls"]),
            "tls_gets": runs + 1, "tls_pieces_served": -(-served // piece_size) if piece_size else None}


def run_swarm(ws, nginx, url, size, want, tls, runs, args) -> dict:
    out = {"plain": [], "tls": []}
    for r in range(runs):
        for kind in ("plain", "tls"):
            out[kind].append(swarm_once(ws, nginx, url, size, want, tls if kind == "tls" else {},
                                        args, "%s-%d" % (kind, r)))
        print("swarm run %d: plain %.2fs   TLS %.2fs (TLS supernode: %d handshakes, %d pieces served)"
              % (r, out["plain"][-1]["wall_s"], out["tls"][-1]["wall_s"],
                 out["tls"][-1]["supernode_handshakes"], out["tls"][-1]["supernode_pieces"]))
        sys.stdout.flush()
    return out


def swarm_once(ws, nginx, url, size, want, tls, args, name) -> dict:
    supernode = harness.Supernode(ws, "swarm-sn-" + name, extra=flags(tls))
    mark = nginx.log_mark()
    folder = ws.dir("swarm-" + name)
    harness.settle()
    started = time.perf_counter()
    procs = [harness.Timed(ws, harness.get_argv(ws, url, os.path.join(folder, "peer%d.bin" % i),
                                                supernode.address, ws.dir("swarm-" + name, "d%d" % i),
                                                "30", flags(tls)), "swarm-%s-%d" % (name, i))
             for i in range(args.peers)]
    peers = harness.finish_all(procs, args.timeout)
    wall = max(t.ended for t in procs) - started
    origin = nginx.body_bytes(mark)
    ws.stop_seeders()
    verified = all(harness.sha256_file(os.path.join(folder, "peer%d.bin" % i)) == want
                   for i in range(args.peers))
    supernode.stop()
    for i in range(args.peers):
        harness.remove(os.path.join(folder, "peer%d.bin" % i))
    from_supernode = sum(p["json"]["bytes_from_supernode"] for p in peers)
    return {"wall_s": wall, "verified": verified, "origin_ratio": origin["bytes"] / size,
            "from_supernode": from_supernode,
            "from_peers": sum(p["json"]["bytes_from_peers"] for p in peers),
            "supernode_handshakes": handshakes_logged(supernode) if tls else 0,
            "supernode_pieces": -(-from_supernode // piece_size_for(size))}


def summarize(single, swarm, size, swarm_size, peers) -> dict:
    med = harness.median
    s = {}
    for kind in ("plain", "tls"):
        s["single_%s_s" % kind] = med([g["wall_s"] for g in single[kind]])
        s["single_%s_mb_s" % kind] = size / 1e6 / s["single_%s_s" % kind]
        s["single_%s_client_cpu_s" % kind] = med([g["cpu_s"] or float("nan") for g in single[kind]])
        s["single_%s_supernode_cpu_s" % kind] = med([g["supernode_cpu_s"] for g in single[kind]])
        s["swarm_%s_s" % kind] = med([r["wall_s"] for r in swarm[kind]])
        s["swarm_%s_mb_s" % kind] = peers * swarm_size / 1e6 / s["swarm_%s_s" % kind]
    s["single_ratio"] = s["single_plain_s"] / s["single_tls_s"]
    s["swarm_ratio"] = s["swarm_plain_s"] / s["swarm_tls_s"]
    s["single_handshakes"] = single["tls_handshakes"]
    s["single_pieces_served"] = single["tls_pieces_served"]
    s["single_handshakes_per_get"] = single["tls_handshakes"] / single["tls_gets"]
    s["single_handshakes_per_piece"] = (single["tls_handshakes"] / single["tls_pieces_served"]
                                        if single["tls_pieces_served"] else None)
    s["swarm_supernode_handshakes"] = med([r["supernode_handshakes"] for r in swarm["tls"]])
    s["swarm_supernode_pieces"] = med([r["supernode_pieces"] for r in swarm["tls"]])
    s["swarm_origin_ratio_max"] = max(r["origin_ratio"] for r in swarm["plain"] + swarm["tls"])
    s["all_verified"] = all(g["verified"] for k in ("plain", "tls") for g in single[k] + swarm[k])
    s["target_ratio"] = TARGET_RATIO
    s["target_met"] = min(s["single_ratio"], s["swarm_ratio"]) >= TARGET_RATIO
    return s


def handshake_cost(ws, tls, count: int) -> dict:
    """`count` fresh mutual TLS handshakes with a TLS supernode, one after another."""
    supernode = harness.Supernode(ws, "handshakes", extra=flags(tls))
    host, port = supernode.address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=tls["--tls-ca"])
    context.load_cert_chain(tls["--tls-cert"], tls["--tls-key"])
    harness.settle()
    walls = []
    server_cpu = harness.process_cpu_s(supernode.proc.pid)
    client_cpu = time.thread_time()
    for _ in range(count):
        began = time.perf_counter()
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=host) as conn:
                version = conn.version()
        walls.append(time.perf_counter() - began)
    client_cpu = time.thread_time() - client_cpu
    server_cpu = harness.process_cpu_s(supernode.proc.pid) - server_cpu
    supernode.stop()
    return {"count": count, "version": version, "wall_ms_median": harness.median(walls) * 1e3,
            "client_cpu_ms": client_cpu / count * 1e3, "supernode_cpu_ms": server_cpu / count * 1e3}


def print_handshake_cost(cost, s) -> None:
    print("  handshake cost (%d fresh mutual %s handshakes, loopback): %.2f ms wall (median), "
          "CPU %.2f ms client, %.2f ms supernode" % (cost["count"], cost["version"],
                                                      cost["wall_ms_median"], cost["client_cpu_ms"],
                                                      cost["supernode_cpu_ms"]))
    if s and s["single_handshakes_per_piece"]:
        gets = s["single_handshakes"] / s["single_handshakes_per_get"]
        pieces = s["single_pieces_served"] / gets
        cpu_ms = cost["client_cpu_ms"] + cost["supernode_cpu_ms"]
        for label, count in (("connections reused (measured)", s["single_handshakes_per_get"]),
                             ("one handshake a piece", pieces)):
            print("  single get, %s: %.0f handshakes, %.1f ms of handshake wall (%.2f%% of the get's "
                  "%.2f s), %.1f CPU-ms on both ends" % (
                      label, count, count * cost["wall_ms_median"],
                      100 * count * cost["wall_ms_median"] / 1e3 / s["single_tls_s"], s["single_tls_s"],
                      count * cpu_ms))


def print_summary(s, size, swarm_size, peers, runs) -> None:
    print("\ntls: median of %d runs each, alternating plain and mutual TLS" % runs)
    print("  single get of %s: plain %.2fs (%.0f MB/s; CPU client %.2fs, supernode %.2fs)   TLS %.2fs "
          "(%.0f MB/s; CPU client %.2fs, supernode %.2fs)   ratio %.2f" % (
              harness.human(size), s["single_plain_s"], s["single_plain_mb_s"],
              s["single_plain_client_cpu_s"], s["single_plain_supernode_cpu_s"], s["single_tls_s"],
              s["single_tls_mb_s"], s["single_tls_client_cpu_s"], s["single_tls_supernode_cpu_s"],
              s["single_ratio"]))
    print("  swarm of %d x %s: plain %.2fs (%.0f MB/s aggregate)   TLS %.2fs (%.0f MB/s)   ratio %.2f" % (
        peers, harness.human(swarm_size), s["swarm_plain_s"], s["swarm_plain_mb_s"],
        s["swarm_tls_s"], s["swarm_tls_mb_s"], s["swarm_ratio"]))
    print("  handshakes: single-get supernode %d for %s pieces (%.1f per get, %.3f per piece); "
          "swarm supernode %d for %d pieces" % (
              s["single_handshakes"], s["single_pieces_served"], s["single_handshakes_per_get"],
              s["single_handshakes_per_piece"] or 0, s["swarm_supernode_handshakes"],
              s["swarm_supernode_pieces"]))
    print("  target (TLS >= %.1fx plain, single and swarm): %s" % (
        TARGET_RATIO, "MET" if s["target_met"] else "MISSED"))


if __name__ == "__main__":
    sys.exit(main())
