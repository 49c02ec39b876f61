"""Gossip membership targets (issue 21), measured on the simulated network of
tests/gossip_sim.py, where one process can host hundreds of members and an hour
of protocol time runs in a minute or so:

- failure detection: a killed member known dead by every live member (p50/p99
  over all observers of several kills), N = 50 and 500, `lan` and `fast`;
- join: time until 99 % of the members know a new one;
- steady-state traffic per member (bytes a second, wire overhead included);
- false deaths in one hour at 2 % loss with one member paused 2 s every minute,
  Lifeguard on and off, counted apart for the healthy members and the paused
  one: frozen (nothing of it runs) or stalled (its timers run, its packets wait
  in its socket buffer), at lan timings and at lan timings / 5 (where the 2 s
  pause outlasts the 1.4 s minimum suspicion, as a 10 s pause would at lan's);
  and one member handling every packet 8 s late (a starved CPU), on and off.

    python3 bench/gossip_sim.py            # everything (several minutes of CPU)
    python3 bench/gossip_sim.py --quick    # N = 50 only, 10 minutes instead of an hour
"""
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from dfly.gossip.swim import PROFILES  # noqa: E402
from tests.gossip_sim import SimNet, percentile, scaled  # noqa: E402


def detection(profile, n, kills, seed=1):
    net = SimNet(PROFILES[profile], seed=seed)
    net.cluster(n, settle_s=30)
    times = []
    for k in range(kills):
        victim = "m%d" % (1 + k * (n // (kills + 1)))
        start = net.now
        net.crash(victim)
        net.run(45)
        seen = net.dead_seen.get(victim, {})
        times += [seen.get(o, float("inf")) - start for o in net.live()]
    joined = []
    for k in range(3):
        start = net.now
        net.add("new%d" % k, join=["m0"])
        net.run(10)
        seen = net.alive_seen.get("new%d" % k, {})
        others = [o for o in net.live() if not o.startswith("new")]
        joined.append(percentile([seen.get(o, float("inf")) - start for o in others], 99))
    return percentile(times, 50), percentile(times, 99), max(joined)


def traffic(profile, n, seed=2):
    net = SimNet(PROFILES[profile], seed=seed, measure_bytes=True)
    net.cluster(n, settle_s=60)
    before = dict(net.bytes_sent)
    net.run(120)
    rates = sorted((net.bytes_sent[m] - before[m]) / 120.0 for m in net.live())
    return rates[len(rates) // 2], rates[-1]


def false_deaths(lifeguard, minutes, fault="freeze", speed=1.0, seed=3):
    """(deaths of healthy members, deaths of m7), each counted once per observer."""
    config = dataclasses.replace(scaled(PROFILES["lan"], 1.0 / speed), lifeguard=lifeguard)
    net = SimNet(config, seed=seed, loss=0.02)
    net.cluster(50, settle_s=30)
    net.false_deaths.clear()
    if fault == "starve":
        net.slow_down("m7", 8.0)
    for _ in range(minutes):
        if fault != "starve":
            getattr(net, fault)("m7", 2.0)
        net.run(60)
    paused = len([d for d in net.false_deaths if d[2] == "m7"])
    return len(net.false_deaths) - paused, paused


def main():
    quick = "--quick" in sys.argv
    sizes = [50] if quick else [50, 500]
    minutes = 10 if quick else 60
    started = time.time()
    print("gossip simulation (tests/gossip_sim.py), seeds fixed")
    for profile in ("lan", "fast"):
        for n in sizes:
            p50, p99, join = detection(profile, n, kills=3 if n > 100 else 5)
            print("detection %-4s N=%-3d  dead everywhere p50 %.1f s  p99 %.1f s" % (profile, n, p50, p99)
                  + "   join known by 99%% in %.2f s" % join, flush=True)
    for n in sizes:
        median, worst = traffic("lan", n)
        print("traffic   lan  N=%-3d  %.0f B/s per member (median), %.0f B/s (max)" % (n, median, worst),
              flush=True)
    print("false deaths (healthy members / m7 itself, once per observer), N=50, 2% loss:", flush=True)
    for speed in (1, 5):
        for fault in ("freeze", "stall"):
            for lifeguard in (True, False):
                healthy, paused = false_deaths(lifeguard, minutes, fault, speed)
                timings = "lan timings / %d" % speed if speed > 1 else "lan timings"
                print("  %d min, m7 %-7s 2 s a minute, %-16s lifeguard %-5s: %d / %d"
                      % (minutes, fault + "s", timings, lifeguard, healthy, paused), flush=True)
    for lifeguard in (True, False):
        healthy, _ = false_deaths(lifeguard, min(minutes, 10), "starve")
        print("  %d min, m7 handling every packet 8 s late, lan timings, lifeguard %-5s: %d healthy"
              % (min(minutes, 10), lifeguard, healthy), flush=True)
    print("(%.0f s of CPU)" % (time.time() - started))


if __name__ == "__main__":
    main()
