"""`dfly bench`: simulated peers in one process against a real supernode and origin."""
import json
import time

import pytest
from helpers import MiB, content

from dfly import options
from dfly.bench import app
from dfly.bench.config import BenchConfig
from dfly.bench.report import PeerRecord
from dfly.cli import main
from dfly.protocol.messages import RegisterRequest, ScheduleRequest


@pytest.mark.time_limit(60)
def test_bench_json_reports_times_latencies_and_the_byte_split(origin, supernode, capsys, tmp_path):
    src = origin.add("bench.bin", content(12 * MiB, seed=7))   # several pieces

    code = main(["bench", src.url, "--supernode", supernode.address, "--peers", "6",
                 "--upload-listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "copies"), "--json"])

    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["peers"] == summary["succeeded"] == 6 and summary["failed"] == 0
    assert summary["bytes"]["total"] == 6 * src.size
    assert summary["bytes"]["supernode"] + summary["bytes"]["peers"] == 6 * src.size
    assert summary["bytes"]["peers"] > 0
    assert origin.body_bytes("bench.bin") == src.size
    for key in ("p50", "p90", "p99", "max"):
        assert summary["download_s"][key] > 0
    assert summary["register_latency_s"]["count"] == 6
    assert summary["schedule_latency_s"]["count"] >= 6
    # The supernode says how long each reply took it: never longer than the round trip.
    assert summary["schedule_in_supernode_s"]["count"] == summary["schedule_calls"]
    assert 0 <= summary["schedule_in_supernode_s"]["max"] <= summary["schedule_round_trip_s"]["max"]
    assert summary["bench_cpu_s"] > 0   # six peers hashing 12 MiB each cannot be free
    assert list((tmp_path / "copies").iterdir()) == []   # copies removed afterwards


@pytest.mark.time_limit(60)
def test_bench_in_waves_lets_late_peers_fetch_from_early_ones(origin, supernode):
    src = origin.add("waves.bin", content(8 * MiB, seed=8))
    config = options.build(BenchConfig, None, None, supernode=supernode.address, peers=6, waves=3,
                           wave_interval_s=0.2, upload_listen="127.0.0.1:0")

    summary = app.run(config, src.url)

    assert summary["succeeded"] == 6
    assert summary["bytes"]["supernode"] <= 2 * src.size
    assert summary["peer_share"] >= 0.5
    assert summary["start_lag_s"]["count"] == 6   # each peer says how late its wave began


@pytest.mark.time_limit(60)
def test_bench_counts_failures_and_exits_nonzero_when_the_source_is_missing(origin, supernode, capsys):
    code = main(["bench", origin.url("missing.bin"), "--supernode", supernode.address,
                 "--peers", "3", "--upload-listen", "127.0.0.1:0", "--timeout", "20s"])

    out = capsys.readouterr().out
    assert code == 1
    assert "0 ok, 3 failed" in out
    assert "SourceError" in out


def test_bench_without_a_supernode_is_a_usage_error(origin, capsys):
    with pytest.raises(SystemExit) as stopped:   # argparse's usage error, as for any required flag
        main(["bench", origin.url("f.bin")])
    assert stopped.value.code == 2
    assert "required: --supernode" in capsys.readouterr().err


@pytest.mark.time_limit(60)
def test_a_one_piece_download_takes_two_schedule_calls(origin, supernode, capsys, tmp_path):
    """One call gets the piece; the next reports it. With its only piece in flight a
    peer has nothing to ask for, so it does not long-poll meanwhile."""
    src = origin.add("one.bin", content(MiB // 2, seed=8))

    code = main(["bench", src.url, "--supernode", supernode.address, "--peers", "1",
                 "--upload-listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "copies"), "--json"])

    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["succeeded"] == 1
    assert summary["schedule_calls"] == 2


@pytest.mark.time_limit(30)
def test_each_call_records_the_supernode_s_time_inside_its_round_trip(origin, supernode):
    """Server-Timing on every reply: more than what the supernode waited on purpose
    (the first schedule call long-polls until a piece is cut), less than the trip."""
    src = origin.add("timed.bin", content(2 * MiB, seed=9))
    record = PeerRecord(0, 0)
    client = app.TimedSupernodeClient(supernode.address, record, time.monotonic)
    try:
        task_id, _ = client.register(RegisterRequest(src.url, "timed-peer", 1, "127.0.0.1"))
        for _ in range(3):
            client.schedule(task_id, ScheduleRequest("timed-peer", want=1, wait_s=2.0))
    finally:
        client.close()

    assert [c.kind for c in record.calls] == ["register", "schedule", "schedule", "schedule"]
    for call in record.calls:
        assert call.server_s is not None and 0 < call.server_s <= call.seconds
        assert call.server_s >= (call.waited_s or 0.0)


@pytest.mark.time_limit(60)
def test_max_live_lets_a_wave_s_peers_start_only_as_others_finish(origin, supernode):
    src = origin.add("live.bin", content(MiB, seed=10))
    config = options.build(BenchConfig, None, None, supernode=supernode.address, peers=5,
                           upload_listen="127.0.0.1:0", max_live=1)
    records, _, _ = app.simulate(config, src.url)

    assert [p.error for p in records] == [None] * 5
    spans = sorted((p.start_lag_s, p.start_lag_s + p.seconds) for p in records)   # one wave: same due
    for (_, ended), (began, _) in zip(spans, spans[1:]):
        assert began >= ended   # one at a time: the next began after the last one's download ended
