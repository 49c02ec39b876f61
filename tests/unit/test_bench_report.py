"""`dfly bench`'s report: latency per call, percentiles and the printed summary."""
import math

import pytest

from dfly.bench.report import CallRecord, PeerRecord, in_supernode, latency, percentile, render, summarize
from dfly.httpd import parse_server_timing, server_timing


def test_a_schedule_call_counts_its_round_trip_minus_what_the_supernode_waited():
    call = CallRecord("schedule", 1.25, True, pieces=1, waited_s=1.2)
    assert latency(call) == pytest.approx(0.05)


def test_a_long_poll_that_came_back_empty_counts_too_when_the_wait_is_known():
    assert latency(CallRecord("schedule", 2.004, True, pieces=0, waited_s=2.0)) == pytest.approx(0.004)


def test_a_clock_skew_never_makes_a_latency_negative():
    assert latency(CallRecord("schedule", 0.5, True, waited_s=0.6)) == 0.0


def test_without_waited_s_an_empty_long_poll_cannot_be_told_from_slowness():
    assert latency(CallRecord("schedule", 2.0, True, pieces=0)) is None
    assert latency(CallRecord("schedule", 0.3, True, pieces=2)) == 0.3
    assert latency(CallRecord("schedule", 0.01, False)) == 0.01


def test_a_registration_counts_its_whole_round_trip():
    assert latency(CallRecord("register", 0.02, False)) == 0.02


def test_the_nearest_rank_percentile():
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 100) == 4.0
    assert math.isnan(percentile([], 99))


def test_the_summary_reports_net_schedule_latency_and_the_round_trips_beside_it():
    peer = PeerRecord(0, 0, seconds=1.0, length=100, bytes_from_peers=100, calls=[
        CallRecord("register", 0.010, False),
        CallRecord("schedule", 1.030, True, pieces=1, waited_s=1.0),
        CallRecord("schedule", 0.020, False, pieces=0, waited_s=0.0)])

    summary = summarize([peer], wall_s=2.0, cpu_s=3.0)

    assert summary["bench_cpu_s"] == 3.0
    assert summary["register_latency_s"]["max"] == 0.01
    assert summary["schedule_latency_s"]["count"] == 2
    assert summary["schedule_latency_s"]["max"] == pytest.approx(0.03)
    assert summary["schedule_round_trip_s"]["max"] == pytest.approx(1.03)
    assert summary["schedule_waited_reported"] == 2
    text = render(summary, "http://origin/f")
    assert "schedule latency  p50 20.0  p90 30.0  p99 30.0  max 30.0 ms (2 calls)" in text
    assert "does not report waited_s" not in text
    assert "this process      3.0 CPU-s, 1.5 cores on average" in text


def test_the_report_says_when_the_supernode_does_not_report_its_waits():
    peer = PeerRecord(0, 0, seconds=1.0, length=100, calls=[
        CallRecord("register", 0.010, False),
        CallRecord("schedule", 2.0, True, pieces=0),
        CallRecord("schedule", 0.040, True, pieces=1)])

    summary = summarize([peer], wall_s=2.0)

    assert summary["schedule_latency_s"]["count"] == 1
    assert summary["schedule_latency_s"]["max"] == 0.04
    assert "does not report waited_s" in render(summary, "http://origin/f")


def test_the_supernode_s_own_time_leaves_its_waits_out():
    assert in_supernode(CallRecord("schedule", 1.30, True, pieces=1, waited_s=1.2, server_s=1.25)) \
        == pytest.approx(0.05)
    assert in_supernode(CallRecord("register", 0.02, False, server_s=0.004)) == pytest.approx(0.004)
    assert in_supernode(CallRecord("schedule", 0.02, False, waited_s=0.0)) is None   # it did not say


def test_the_summary_and_report_show_the_supernode_s_share_beside_the_round_trip():
    peer = PeerRecord(0, 0, seconds=1.0, length=100, calls=[
        CallRecord("schedule", 1.030, True, pieces=1, waited_s=1.0, server_s=1.004),
        CallRecord("schedule", 0.020, False, pieces=0, waited_s=0.0, server_s=0.002),
        CallRecord("schedule", 0.010, False, pieces=0, waited_s=0.0)])

    summary = summarize([peer], wall_s=1.0)

    assert summary["schedule_in_supernode_s"]["count"] == 2
    assert summary["schedule_in_supernode_s"]["max"] == pytest.approx(0.004)
    assert "    in the supernode p50 2.0  p90 4.0  p99 4.0  max 4.0 ms (2 calls)" in render(summary, "u")


def test_the_server_timing_header_reads_back_and_anything_else_is_none():
    assert parse_server_timing(server_timing(0.0123)) == pytest.approx(0.0123)
    for junk in (None, "", "dfly;dur=", "other;dur=5", "dfly;dur=-1", "dfly;dur=5, x"):
        assert parse_server_timing(junk) is None


def test_the_report_says_how_late_the_peers_started_after_their_wave_s_time():
    peers = [PeerRecord(i, 0, seconds=1.0, length=100, start_lag_s=lag)
             for i, lag in enumerate((0.001, 0.002, 0.250))]

    summary = summarize(peers, wall_s=2.0)

    assert summary["start_lag_s"]["max"] == 0.25 and summary["start_lag_s"]["count"] == 3
    assert "start lag         p50 2.0  p90 250.0  p99 250.0  max 250.0 ms: each peer's start" in \
        render(summary, "http://origin/f")
