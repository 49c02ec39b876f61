"""`get --trace`'s record (dfly/peer/trace.py) of real downloads in a small swarm:
every piece, in order in time, each from a real holder."""
from collections import Counter
from xml.etree import ElementTree

import pytest
from helpers import MiB, content, run_all

from bench import timeline, tracefiles
from bench import traces as bench_traces
from dfly.peer.trace import Trace, write_trace
from dfly.supernode.scheduler import SUPERNODE

SVG = "{http://www.w3.org/2000/svg}"


def _check_times_ordered(record: dict) -> None:
    times = [e["t"] for e in record["events"]]
    assert times == sorted(times) and times[0] == 0.0
    starts = [s["t"] for s in record["schedules"] if not s.get("reporter")]
    assert starts == sorted(starts)
    for call in record["schedules"]:
        assert call["latency_s"] >= 0 and (call["waited_s"] or 0) <= call["latency_s"] + 0.01
    for piece in record["pieces"]:
        assert 0 < piece["start_s"] <= piece["end_s"] and piece["verify_s"] >= 0


@pytest.mark.time_limit(60)
def test_trace_of_a_swarm_download_has_every_piece_from_real_holders(
        origin, supernode, client_factory, downloads):
    src = origin.add("traced.bin", content(10 * MiB, seed=11))   # ten 1 MiB pieces
    clients = [client_factory([supernode.address], seed_for_s=60) for _ in range(3)]
    traces = [Trace() for _ in clients]
    outcomes = run_all([lambda c=c, t=t, i=i: c.download(src.url, str(downloads / ("t%d" % i)),
                                                           digest=src.digest, trace=t)
                        for i, (c, t) in enumerate(zip(clients, traces))], timeout=50)
    assert all(e is None for _, e in outcomes), outcomes
    peers = {c.peer_id for c in clients}
    holders = set()
    for client, trace in zip(clients, traces):
        record = trace.record()
        kinds = [e["kind"] for e in record["events"]]
        assert kinds[:2] == ["process_start", "registered"] and kinds[-1] == "digest_check"
        assert record["events"][-1]["ok"] is True
        assert record["events"][1]["supernode"] == supernode.address
        good = [p for p in record["pieces"] if p["ok"]]
        assert sorted(p["num"] for p in good) == list(range(10))
        assert sum(p["bytes"] for p in good) == src.size
        registered = record["events"][1]["t"]
        assert all(p["start_s"] >= registered for p in record["pieces"])
        assert record["schedules"] and all(s["t"] >= registered for s in record["schedules"])
        for piece in good:
            assert piece["holder"] == SUPERNODE or piece["holder"] in peers - {client.peer_id}
            holders.add(piece["holder"])
        _check_times_ordered(record)
    assert SUPERNODE in holders



@pytest.mark.time_limit(60)
def test_timeline_draws_each_host_and_piece_of_a_real_swarm(origin, supernode, client_factory,
                                                            downloads, tmp_path):
    folder = tmp_path / "traces"
    _, traces = _traced_swarm(origin, supernode, client_factory, downloads, folder, "drawn", 12)
    out = str(tmp_path / "timeline.svg")
    assert timeline.main([str(folder), "-o", out]) == 0

    drawn = ElementTree.parse(out).getroot()
    texts = [t.text for t in drawn.iter(SVG + "text")]
    assert {"host0", "host1", "host2"} <= set(texts)
    bars = [r for r in drawn.iter(SVG + "rect") if "piece" in r.get("class", "")]
    records = [t.record() for t in traces]
    pieces = [p for r in records for p in r["pieces"]]
    assert len(bars) == len(pieces) and len(pieces) >= 18
    by_kind = Counter(r.get("class").split()[1] for r in bars)
    assert by_kind["supernode"] == sum(1 for p in pieces if p["holder"] == SUPERNODE and p["ok"])
    from_peers = [p for p in pieces if p["holder"] != SUPERNODE and p["ok"]]
    assert by_kind["whole"] == sum(1 for p in from_peers if not p["relay"])
    assert by_kind["relayed"] == sum(1 for p in pieces if p["ok"] and p["relay"])
    assert all(float(r.get("x")) >= timeline.LEFT and float(r.get("width")) > 0 for r in bars)
    assert len(list(drawn.iter(SVG + "line"))) >= 3 * 2   # each host: registered, complete


@pytest.mark.time_limit(60)
def test_traces_tool_reads_a_real_swarms_figures(origin, supernode, client_factory, downloads, tmp_path):
    folder = tmp_path / "run"
    clients, traces = _traced_swarm(origin, supernode, client_factory, downloads, folder, "read", 13)

    report = bench_traces.analyse(bench_traces.hosts_from(tracefiles.load([str(folder)])), 100.0)
    pieces = [p for t in traces for p in t.record()["pieces"]]
    good = [p for p in pieces if p["ok"]]
    assert (report["hosts"], report["file_pieces"]) == (3, 6)
    assert sum(r["pieces"] for r in report["per_host"]) == len(good) == 18
    sn = report["supernode"]
    assert sn["pieces"] == sum(1 for p in good if p["holder"] == SUPERNODE) >= 6
    # the bins hold every byte the supernode sent, no more
    assert sum(sn["egress_mbit_s"]) * 0.1 * 1e6 / 8 == pytest.approx(sn["bytes"], rel=1e-6)
    for r in report["per_host"]:
        assert sum(r["in_flight"]) == pytest.approx(1.0) and r["parallel"] == clients[0].config.parallel
        assert r["receive_mbit_s"] > 0 and r["send_mbit_s"] is not None
        assert 0 <= r["tail_pieces"] <= 6 and r["tail_s"] >= 0
    rel = report["relays"]
    assert rel["relayed"]["count"] == sum(1 for p in good if p["relay"])
    assert sum(rel[k]["count"] for k in ("supernode", "whole", "relayed", "failed")) == len(pieces)
    asked = [c for t in traces for c in t.record()["schedules"] if not c.get("reporter")]
    assert report["schedule_calls"]["count"] == len(asked) > 0
    assert bench_traces.main([str(folder), "--rate", "100"]) == 0


def _traced_swarm(origin, supernode, client_factory, downloads, folder, name: str, seed: int):
    """Three peers get one 6 MiB file (six 1 MiB pieces), each with its trace, written
    as host0.json.. in `folder`: (clients, traces)."""
    src = origin.add(name + ".bin", content(6 * MiB, seed=seed))
    clients = [client_factory([supernode.address], seed_for_s=60) for _ in range(3)]
    traces = [Trace() for _ in clients]
    for client, trace in zip(clients, traces):
        trace.described(peer_id=client.peer_id)   # as `dfly get --trace` does
    outcomes = run_all([lambda c=c, t=t, i=i: c.download(src.url, str(downloads / ("%s%d" % (name, i))),
                                                          trace=t)
                        for i, (c, t) in enumerate(zip(clients, traces))], timeout=50)
    assert all(e is None for _, e in outcomes), outcomes
    folder.mkdir()
    for i, trace in enumerate(traces):
        write_trace(trace, str(folder / ("host%d.json" % i)))
    return clients, traces
