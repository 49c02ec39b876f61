"""Proxy origin requests: N concurrent `curl -x` clients for one cold file
through `dfly daemon`'s HTTP proxy; how many requests the origin sees per task.

One supernode, one daemon with `--proxy-rule 'p2p /big/'`, and an origin
serving a 4 MiB file: nginx, or Python's `http.server` (`--origin python`,
whose accept queue of 5 is where 200 HEADs at once used to cost 31 s of SYN
retransmits). Each run asks for a new cold file. The origin's access log says
how many HEADs and GETs the file cost; the target is 1 GET and at most 1 HEAD
per task, whatever the number of clients.

    python3 bench/proxy_origin.py              # 200 clients, 3 runs, nginx
    python3 bench/proxy_origin.py --origin python
    python3 bench/proxy_origin.py --quick      # 50 clients, 1 run
"""
import os
import re
import subprocess
import sys
import time

import harness

NAME = "proxy_origin"


class PythonOrigin:
    """`python3 -m http.server` on a loopback port; its stderr is the access log."""

    def __init__(self, ws: harness.Workspace, www: str):
        self.ws = ws
        self.port = harness.free_port()
        self.access_log = ws.path("http-server.log")
        self._log = open(self.access_log, "wb")
        self.proc = ws.popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                              "--directory", www, str(self.port)],
                             stdout=subprocess.DEVNULL, stderr=self._log)
        harness.wait_until(lambda: harness.port_open(self.port), 10, "http.server on %d" % self.port)

    def url(self, name: str) -> str:
        return "http://127.0.0.1:%d/%s" % (self.port, name)

    def stop(self) -> None:
        self.ws.stop(self.proc)
        self._log.close()


def origin_requests(access_log: str, name: str) -> dict:
    """{"HEAD": n, "GET": n} for /name, from an nginx or http.server access log."""
    counts = {"HEAD": 0, "GET": 0}
    with open(access_log, "rb") as f:
        for m in re.finditer(rb'"(HEAD|GET) /' + re.escape(name.encode()) + rb" ", f.read()):
            counts[m.group(1).decode()] += 1
    return counts


def run_once(ws, origin, daemon, name: str, size: int, clients: int, timeout_s: float) -> dict:
    url = origin.url(name)
    started = time.perf_counter()
    procs = [subprocess.Popen(["curl", "-sS", "--max-time", str(timeout_s), "-x", "http://" + daemon.address,
                               "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for _ in range(clients)]
    answers = [p.communicate(timeout=timeout_s + 10)[0].decode() for p in procs]
    wall = time.perf_counter() - started
    ok = sum(1 for a in answers if a == "200 %d" % size)
    counts = origin_requests(origin.access_log, name)
    return {"file": name, "clients": clients, "ok": ok, "wall_s": round(wall, 2),
            "origin_heads": counts["HEAD"], "origin_gets": counts["GET"]}


def main() -> int:
    p = harness.base_parser(NAME, __doc__)
    p.add_argument("--clients", type=int, help="concurrent curl clients (default 200; quick 50)")
    p.add_argument("--size", type=harness.parse_size, default=4 * 1024 * 1024, help="file size (default 4M)")
    p.add_argument("--origin", choices=("nginx", "python"), default="nginx", help="the origin server")
    p.add_argument("--timeout", type=float, default=120, help="bound on one client, seconds")
    args = p.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    clients = args.clients or (50 if args.quick else 200)

    results = []
    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        www = ws.dir("www")
        os.makedirs(os.path.join(www, "big"))
        origin = harness.Nginx(ws, www) if args.origin == "nginx" else PythonOrigin(ws, www)
        supernode = harness.Supernode(ws)
        daemon = harness.Daemon(ws, "daemon", supernode.address, "--proxy-rule", "p2p /big/")
        try:
            for r in range(runs):
                name = "big/cold-%d.bin" % r
                harness.write_file(os.path.join(www, name), args.size)
                result = run_once(ws, origin, daemon, name, args.size, clients, args.timeout)
                print("run %d: %d/%d clients ok in %.2fs; origin saw %d HEAD, %d GET"
                      % (r, result["ok"], clients, result["wall_s"], result["origin_heads"],
                         result["origin_gets"]))
                results.append(result)
        finally:
            daemon.stop()
            supernode.stop()
            origin.stop()
    per_task = max(r["origin_heads"] + r["origin_gets"] for r in results)
    summary = {"clients": clients, "origin": args.origin, "size": args.size,
               "origin_requests_per_task_max": per_task,
               "wall_s_median": harness.median([r["wall_s"] for r in results]),
               "all_ok": all(r["ok"] == clients for r in results)}
    print("%d clients, %s origin: at most %d origin requests per task; median wall %.2fs"
          % (clients, args.origin, per_task, summary["wall_s_median"]))
    harness.save(args, NAME, {"summary": summary, "runs": results})
    return 0 if summary["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
