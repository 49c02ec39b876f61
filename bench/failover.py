"""Failover: the supernode that owns a task is SIGKILLed while a swarm downloads it.

Three `dfly supernode` processes form one cluster (`--cluster`, `--cluster-secret`,
`--member-dead-after 1.5`, `--adopt-grace 1`, each slowed by
`--source-rate-limit` so the kill lands mid-transfer); nginx is the origin (it
answers Range with If-Range, which the takeover relies on). --peers peers, each
a `dfly.Client` in its own process (bench/failover_peer.py, `--failover 30`),
download one file listing all three members, each list in another order so
they reach different members first. Once the task's owner (the rendezvous hash
of the task id over the members) has cut --kill-after pieces, it is SIGKILLed.

Per run:
- failover time: from the SIGKILL to the moment every peer still downloading
  has verified a piece again after noticing the owner was gone (its first
  progress callback after its client logged "trying the next supernode";
  pieces already in flight at the kill do not count as recovery);
- extra origin bytes: what nginx sent (its access log) minus the file size;
- time lost: the swarm's wall time minus that of the same swarm without a kill,
  measured in the same run (the baseline; its origin bytes must be 1.00x).

    python3 bench/failover.py            # 6 peers x 128 MiB, source at 40 MiB/s, 5 runs
    python3 bench/failover.py --quick    # 6 peers x 32 MiB, 1 run
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import harness
from harness import MiB

NAME = "failover"
PEER = os.path.join(harness.HERE, "failover_peer.py")
NOTICED = "trying the next supernode"     # dfly.client's log line when its supernode is down
TARGET_EXTRA_PIECES = 3                   # what tests/e2e/test_cluster.py allows


def main() -> int:
    p = harness.base_parser(NAME, __doc__)
    p.add_argument("--size", type=harness.parse_size, help="file size (default 128M; quick 32M)")
    p.add_argument("--peers", type=int, default=6, help="concurrent peers (default 6)")
    p.add_argument("--source-rate-limit",
                   help="each supernode's --source-rate-limit (default 40M; quick 10M)")
    p.add_argument("--kill-after", type=int, help="pieces the owner has cut when killed (default 4; quick 2)")
    p.add_argument("--failover", type=float, default=30, help="the peers' --failover, seconds (default 30)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the same swarm without a kill")
    p.add_argument("--timeout", type=float, default=180, help="bound on one swarm, seconds")
    args = p.parse_args()
    size = args.size or (32 * MiB if args.quick else 128 * MiB)
    runs = args.runs or (1 if args.quick else 5)
    kill_after = args.kill_after or (2 if args.quick else 4)
    args.source_rate_limit = args.source_rate_limit or ("10M" if args.quick else "40M")

    with harness.Workspace(args.tmp, args.keep, args.pyz) as ws:
        api = DflyApi(ws.pyz)
        nginx, url, want = harness.served_file(ws, size)
        swarm = Swarm(ws, api, nginx, url, size, want, args)
        killed, baseline = [], []
        for r in range(runs):
            if args.baseline:
                baseline.append(swarm.run("r%d-base" % r, kill_after=None))
            killed.append(swarm.run("r%d-kill" % r, kill_after=kill_after))
            print_run(r, killed[-1], baseline[-1] if baseline else None, size)
        nginx.stop()

    summary = summarize(killed, baseline, size)
    print_summary(summary, size, args, runs, kill_after)
    harness.save(args, NAME, {"size": size, "peers": args.peers, "runs": runs, "kill_after": kill_after,
                              "source_rate_limit": args.source_rate_limit, "failover_s": args.failover,
                              "summary": summary, "killed_runs": killed, "baseline_runs": baseline})
    return 0 if summary["all_verified"] and summary["all_p2p"] else 1


class DflyApi:
    """The few dfly functions the benchmark needs, imported from the zipapp measured."""

    def __init__(self, pyz: str):
        sys.path.insert(0, pyz)
        try:
            from dfly.protocol.task import task_id
            from dfly.supernode.client import SupernodeClient
            from dfly.supernode.cluster import rendezvous_owner
        finally:
            sys.path.remove(pyz)
        self.task_id, self.SupernodeClient, self.rendezvous_owner = task_id, SupernodeClient, rendezvous_owner

    def query(self, address: str, call: str):
        client = self.SupernodeClient(address, timeout_s=2)
        try:
            return getattr(client, call)()
        except Exception:   # a member starting, dying or dead: no answer is an answer
            return None
        finally:
            client.close()


def reserve_ports(n: int):
    """n distinct loopback ports, all bound at once, then released: cluster members
    must know each other's addresses before any of them starts."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return ["127.0.0.1:%d" % s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Swarm:
    def __init__(self, ws, api: DflyApi, nginx, url: str, size: int, want: str, args):
        self.ws, self.api, self.nginx, self.url = ws, api, nginx, url
        self.size, self.want, self.args = size, want, args
        self.digest = "sha256:" + want

    def start_cluster(self, tag: str):
        for _ in range(5):   # a reserved port can be taken before its member binds it
            addresses = reserve_ports(3)
            members = []
            try:
                for i, address in enumerate(addresses):
                    members.append(harness.Supernode(
                        self.ws, "%s-sn%d" % (tag, i), listen=address,
                        extra=["--cluster", ",".join(addresses), "--cluster-secret", "bench-" + tag,
                               "--member-dead-after", "1.5", "--adopt-grace", "1",
                               "--source-rate-limit", self.args.source_rate_limit]))
            except RuntimeError:
                for m in members:
                    m.stop()
                continue
            harness.wait_until(lambda addresses=addresses: all(self._sees_all(a, 3) for a in addresses),
                               20, "three cluster members alive")
            return addresses, members
        raise RuntimeError("could not start a cluster of three supernodes")

    def _sees_all(self, address: str, n: int) -> bool:
        status = self.api.query(address, "cluster")
        return bool(status) and sum(m["alive"] for m in status["members"]) == n

    def run(self, tag: str, kill_after) -> dict:
        addresses, members = self.start_cluster(tag)
        owner = self.api.rendezvous_owner(self.api.task_id(self.url, digest=self.digest), addresses)
        owner_member = members[addresses.index(owner)]
        mark = self.nginx.log_mark()
        peers = []
        harness.settle()
        started = time.monotonic()
        for i in range(self.args.peers):
            peers.append(self._start_peer(tag, i, addresses[i % 3:] + addresses[:i % 3]))
        kill = None
        try:
            if kill_after is not None:
                kill = self._kill_when_cut(owner_member, owner, kill_after)
            harness.wait_until(lambda: all(_finished(p["events"]) for p in peers), self.args.timeout,
                               "%d peers to finish" % len(peers), step_s=0.05)
            ended = max(_last_event(p["events"])["t"] for p in peers)
            after = {a: self._task(a) for a in addresses if a != owner or kill is None}
        finally:
            for p in peers:   # everyone has finished: stop seeding, leave, exit
                p["proc"].stdin.close()
            for p in peers:
                try:
                    p["proc"].wait(15)
                except subprocess.TimeoutExpired:
                    pass
                self.ws.stop(p["proc"])
                p["stderr"].close()
            for m in members:
                m.stop()
        origin = self.nginx.body_bytes(mark)
        per_peer = [peer_figures(_events(p["events"]), kill and kill["t"]) for p in peers]
        verified = all(os.path.exists(p["out"]) and harness.sha256_file(p["out"]) == self.want
                       for p in peers)
        for p in peers:
            harness.remove(p["out"])
        takeover = [takeover_story(m.log_path) for m in members if m.address != owner]
        for m in members:   # each holds a copy of the file; the logs stay
            shutil.rmtree(os.path.join(m.data_dir, "tasks"), ignore_errors=True)
        out = {"owner": owner, "wall_s": ended - started, "origin_bytes": origin["bytes"],
               "origin_requests": origin["requests"], "origin_statuses": origin["statuses"],
               "origin_ratio": origin["bytes"] / self.size,
               "extra_origin_bytes": origin["bytes"] - self.size,
               "verified": verified, "all_p2p": all(f.get("via") == "p2p" for f in per_peer),
               "errors": [f["error"] for f in per_peer if f.get("error")],
               "tasks_after": after, "takeover": takeover, "peers": per_peer}
        if kill is not None:
            story = next((t for t in takeover if t["registered"]), {})
            old_bytes = origin["each"][0][0] if origin["each"] else 0   # logged when it was cut off
            kill.update(old_owner_origin_bytes=old_bytes,
                        buffered_bytes=old_bytes - (kill["source_bytes"] or 0),
                        new_owner_adopted_digests=story.get("adopted_digests"),
                        new_owner_resumed_at_byte=story.get("resumed_at_byte") or 0,
                        new_owner_refetched_pieces=story.get("refetched_pieces", []))
            live = [f for f in per_peer if f["downloading_at_kill"]]
            stalls = [f["stall_s"] for f in live if f["stall_s"] is not None]
            out.update(kill=kill, killed_at_s=kill["t"] - started,
                       peers_downloading_at_kill=len(live),
                       failover_s=max(stalls) if len(stalls) == len(live) and stalls else None,
                       failover_median_peer_s=harness.median(stalls) if stalls else None,
                       detect_s=max((f["noticed_s"] for f in live if f["noticed_s"] is not None),
                                    default=None),
                       new_owner_source_bytes=sum((t or {}).get("source_bytes", 0) for t in after.values()))
        return out

    def _start_peer(self, tag: str, i: int, supernodes) -> dict:
        folder = self.ws.dir(tag, "peer%d" % i)
        cfg = {"pyz": self.ws.pyz, "url": self.url, "digest": self.digest, "supernodes": supernodes,
               "out": os.path.join(folder, "file.bin"), "data_dir": folder,
               "events": os.path.join(folder, "events.jsonl"), "failover_s": self.args.failover,
               "timeout_s": self.args.timeout}
        stderr = open(os.path.join(folder, "stderr.log"), "wb")
        proc = self.ws.popen([sys.executable, PEER, json.dumps(cfg)], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=stderr)
        return {"proc": proc, "events": cfg["events"], "out": cfg["out"], "stderr": stderr}

    def _kill_when_cut(self, member, address: str, pieces: int) -> dict:
        """SIGKILL the owner once it has cut `pieces` pieces and every peer has joined
        (a peer still starting up when the owner dies measures another case: see
        docs/BENCHMARKS.md); what the owner had done by then."""
        seen = {}

        def cut_enough():
            tasks = self.api.query(address, "tasks") or []
            if tasks:
                seen.update(tasks[0])
            return tasks and tasks[0]["pieces_written"] >= pieces and tasks[0]["peers"] >= self.args.peers
        harness.wait_until(cut_enough, self.args.timeout, "the owner to cut %d pieces" % pieces,
                           step_s=0.01)
        t = time.monotonic()
        member.kill()
        return {"t": t, "pieces_written": seen.get("pieces_written"), "piece_size": seen.get("piece_size"),
                "piece_count": seen.get("piece_count"), "source_bytes": seen.get("source_bytes"),
                "peers_registered": seen.get("peers")}

    def _task(self, address: str):
        tasks = self.api.query(address, "tasks") or []
        return tasks[0] if tasks else None


def takeover_story(log_path: str) -> dict:
    """What a surviving member's log says it did with the task (nothing, for a non-owner)."""
    with open(log_path, errors="replace") as f:
        text = f.read()
    found = re.search(r"taken over with (\d+) piece digests known", text)
    resumed = re.search(r"resuming source at byte (\d+)", text)
    return {"registered": "registered for" in text,
            "adopted_digests": int(found.group(1)) if found else None,
            "resumed_at_byte": int(resumed.group(1)) if resumed else None,
            "refetched_pieces": [int(n) for n in re.findall(r"piece (\d+) refetched from the source", text)],
            "source_done": "source done" in text}


def _events(path: str):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]
    except OSError:
        return []


def _last_event(path: str) -> dict:
    return _events(path)[-1]


def _finished(path: str) -> bool:
    events = _events(path)
    return bool(events) and events[-1]["ev"] in ("done", "error")


def peer_figures(events, kill_t) -> dict:
    """One peer's story around the kill, from its event log."""
    start = events[0]["t"]
    end = next((e for e in events if e["ev"] in ("done", "error")), events[-1])
    out = {"wall_s": round(end["t"] - start, 3)}
    if end["ev"] == "done":
        r = end["result"]
        out.update(via=r["via"], from_source=r["bytes_from_source"], from_supernode=r["bytes_from_supernode"],
                   from_peers=r["bytes_from_peers"])
    else:
        out["error"] = "%s: %s" % (end.get("kind"), end.get("msg"))
    failovers = [e for e in events if e["ev"] == "log" and NOTICED in e["msg"]]
    out["failovers_logged"] = len(failovers)
    if kill_t is None:
        return out
    out["downloading_at_kill"] = end["t"] > kill_t
    noticed = next((e["t"] for e in failovers if e["t"] >= kill_t), None)
    since = noticed if noticed is not None else kill_t
    resumed = next((e["t"] for e in events if e["ev"] == "progress" and e["t"] > since), None)
    if resumed is None and end["ev"] == "done" and end["t"] > kill_t:
        resumed = end["t"]   # the last pieces were in flight: done is progress too
    at_kill = [e["done"] for e in events if e["ev"] == "progress" and e["t"] <= kill_t]
    out.update(noticed_s=None if noticed is None else round(noticed - kill_t, 3),
               stall_s=None if resumed is None else round(resumed - kill_t, 3),
               bytes_at_kill=at_kill[-1] if at_kill else 0,
               progress_between_kill_and_notice=sum(1 for e in events if e["ev"] == "progress"
                                                    and kill_t < e["t"] <= since))
    return out


def summarize(killed, baseline, size) -> dict:
    med = harness.median
    piece = next((r["kill"]["piece_size"] for r in killed if r["kill"].get("piece_size")), None)
    failovers = [r["failover_s"] for r in killed if r["failover_s"] is not None]
    extra = [r["extra_origin_bytes"] for r in killed]
    s = {"failover_s": med(failovers), "failover_max_s": max(failovers, default=None),
         "failover_runs": failovers,
         "failover_median_peer_s": med([r["failover_median_peer_s"] for r in killed
                                        if r["failover_median_peer_s"] is not None]),
         "detect_s": med([r["detect_s"] for r in killed if r["detect_s"] is not None]),
         "extra_origin_bytes": med(extra), "extra_origin_bytes_max": max(extra),
         "extra_origin_ratio": med(extra) / size,
         "extra_origin_pieces": med(extra) / piece if piece else None, "piece_size": piece,
         "pieces_written_at_kill": med([r["kill"]["pieces_written"] for r in killed]),
         "killed_wall_s": med([r["wall_s"] for r in killed]),
         "runs_taken_over_with_digests": sum(1 for r in killed if r["kill"]["new_owner_adopted_digests"]),
         "buffered_bytes": med([r["kill"]["buffered_bytes"] for r in killed]),
         "all_verified": all(r["verified"] for r in killed + baseline),
         "all_p2p": all(r["all_p2p"] for r in killed + baseline),
         "failover_measured_every_run": len(failovers) == len(killed)}
    if baseline:
        s.update(baseline_wall_s=med([r["wall_s"] for r in baseline]),
                 baseline_origin_ratio=max(r["origin_ratio"] for r in baseline),
                 time_lost_s=med([k["wall_s"] - b["wall_s"] for k, b in zip(killed, baseline)]),
                 time_lost_runs=[round(k["wall_s"] - b["wall_s"], 2) for k, b in zip(killed, baseline)])
    s["target_extra_origin_bytes"] = TARGET_EXTRA_PIECES * piece if piece else None
    s["target_met"] = bool(piece) and s["extra_origin_bytes_max"] <= TARGET_EXTRA_PIECES * piece \
        and s["all_verified"] and s["all_p2p"] and s["failover_measured_every_run"]
    return s


def print_run(r, k, b, size) -> None:
    base = ""
    if b is not None:
        base = " | no kill: %.2fs, origin %.2fx" % (b["wall_s"], b["origin_ratio"])
    fo = "n/a" if k["failover_s"] is None else "%.2fs" % k["failover_s"]
    kill = k["kill"]
    print("run %d: owner killed at %.2fs after %s pieces; failover %s (noticed within %s); "
          "extra origin %s (%.3fx); swarm %.2fs, %s%s" % (
              r, k["killed_at_s"], kill["pieces_written"], fo,
              "n/a" if k["detect_s"] is None else "%.2fs" % k["detect_s"],
              harness.human(k["extra_origin_bytes"]), k["extra_origin_bytes"] / size, k["wall_s"],
              "verified" if k["verified"] else "CORRUPT", base))
    print("   origin sent the old owner %s (%s of it unread in socket buffers); the new owner %s, "
          "refetched %d pieces" % (
              harness.human(kill["old_owner_origin_bytes"]), harness.human(kill["buffered_bytes"]),
              "took over %d piece digests and resumed at %s" % (kill["new_owner_adopted_digests"],
                                                                 harness.human(kill["new_owner_resumed_at_byte"]))
              if kill["new_owner_adopted_digests"] else "had no copy of the task: fetched it from byte 0",
              len(kill["new_owner_refetched_pieces"])))
    for i, f in enumerate(k["peers"]):
        print("   peer %d: %s  stall %s  noticed %s  source %s supernode %s peers %s" % (
            i, f.get("via", f.get("error")),
            "n/a" if f.get("stall_s") is None else "%.2fs" % f["stall_s"],
            "n/a" if f.get("noticed_s") is None else "%.2fs" % f["noticed_s"],
            harness.human(f.get("from_source", 0)), harness.human(f.get("from_supernode", 0)),
            harness.human(f.get("from_peers", 0))))
    sys.stdout.flush()


def print_summary(s, size, args, runs, kill_after) -> None:
    print("\nfailover: %d peers x %s, 3 supernodes, source %s/s, owner killed after %d pieces, median of %d"
          % (args.peers, harness.human(size), args.source_rate_limit, kill_after, runs))
    print("  failover time (kill -> every peer progressing again): %.2fs (worst %.2fs; median peer %.2fs;"
          " runs %s)" % (s["failover_s"], s["failover_max_s"] or float("nan"), s["failover_median_peer_s"],
                         ", ".join("%.2f" % v for v in s["failover_runs"])))
    print("  every peer noticed the owner was gone within %.2fs" % s["detect_s"])
    print("  extra origin bytes: %s = %.3fx the file = %.2f pieces of %s (worst %s; target <= %d pieces)" % (
        harness.human(s["extra_origin_bytes"]), s["extra_origin_ratio"], s["extra_origin_pieces"] or 0,
        harness.human(s["piece_size"] or 0), harness.human(s["extra_origin_bytes_max"]),
        TARGET_EXTRA_PIECES))
    print("  the new owner took over the old one's piece digests in %d of %d runs (else: fetched from"
          " byte 0); of the extra bytes, median %s was unread in the old owner's socket buffers" % (
              s["runs_taken_over_with_digests"], runs, harness.human(s["buffered_bytes"])))
    if "baseline_wall_s" in s:
        print("  swarm wall time: %.2fs with the kill, %.2fs without (origin %.2fx): %.2fs lost (runs %s)" % (
            s["killed_wall_s"], s["baseline_wall_s"], s["baseline_origin_ratio"], s["time_lost_s"],
            ", ".join("%.2f" % v for v in s["time_lost_runs"])))
    print("  all verified: %s; all via p2p: %s; target: %s" % (
        s["all_verified"], s["all_p2p"], "MET" if s["target_met"] else "MISSED"))


if __name__ == "__main__":
    sys.exit(main())
