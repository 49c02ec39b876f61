"""bench/traces.py over small hand-made traces, every figure checked by hand.

The swarm of `_two_hosts` (times after the first registration, pieces of 1 MB,
so a piece is 8 Mbit):
  a (peer A, registered at 0.0, 2 slots): piece 0 from the supernode 0.0-0.2,
     piece 1 from the supernode 0.0-0.4, piece 2 from B (whole) 0.5-0.7
  b (peer B, registered at 0.2, no slot count: an older trace): piece 2 from
     the supernode 0.2-0.4, piece 1 from A relayed 0.25-0.45, piece 0 from A
     failed 0.3-0.35, then from the supernode 0.35-0.55
"""
import json
import math

import pytest

from bench import timeline, traces
from bench.traces import Fetch

MB = 1000 * 1000
T0 = 1000.0   # the first registration, as a Unix time


def _trace(peer_id, registered, pieces, parallel=None, shift=0.5):
    """A trace dict as `dfly get --trace` writes it; times given after T0. `pieces`:
    (num, holder, start, end, ok, relay) with relay None for an older trace."""
    wall_start = T0 + registered - shift   # the process started `shift` before it registered
    reg = {"t": shift, "kind": "registered", "supernode": "127.0.0.1:1", "task_id": "t", "latency_s": 0.01}
    if parallel is not None:
        reg["parallel"] = parallel
    out = []
    for num, holder, start, end, ok, relay in pieces:
        p = {"num": num, "holder": holder, "addr": "x", "bytes": MB, "start_s": start - registered + shift,
             "end_s": end - registered + shift, "verify_s": 0.0, "ok": ok}
        if relay is not None:
            p["relay"] = relay
        out.append(p)
    return {"format": 1, "wall_start": wall_start, "peer_id": peer_id,
            "events": [{"t": 0.0, "kind": "process_start"}, reg], "schedules": [], "pieces": out}


def _two_hosts():
    a = _trace("A", 0.0, [(0, "supernode", 0.0, 0.2, True, False), (1, "supernode", 0.0, 0.4, True, False),
                          (2, "B", 0.5, 0.7, True, False)], parallel=2)
    b = _trace("B", 0.2, [(2, "supernode", 0.2, 0.4, True, None), (1, "A", 0.25, 0.45, True, True),
                          (0, "A", 0.3, 0.35, False, None), (0, "supernode", 0.35, 0.55, True, None)])
    return [("a", a), ("b", b)]


def _report(rate=100.0):
    return traces.analyse(traces.hosts_from(_two_hosts()), rate)


def _host(report, name):
    return next(r for r in report["per_host"] if r["name"] == name)


def test_hosts_line_up_on_the_first_registration_and_sort_fetches_by_source():
    a, b = traces.hosts_from(_two_hosts())
    assert (a.registered, a.parallel, b.registered, b.parallel) == (0.0, 2, pytest.approx(0.2), 0)
    assert [(f.num, f.kind) for f in a.fetches] == [(0, "supernode"), (1, "supernode"), (2, "whole")]
    assert [(f.num, f.kind) for f in b.fetches] == [(2, "supernode"), (1, "relayed"), (0, "failed"),
                                                    (0, "supernode")]
    assert b.fetches[1].start == pytest.approx(0.25) and b.fetches[1].end == pytest.approx(0.45)


def test_supernode_egress_spreads_each_piece_over_its_fetch_in_tenth_second_bins():
    sn = _report()["supernode"]
    # 4 pieces, 32 Mbit from 0.0 to 0.55: 58.2 Mbit/s; 1.0 s of fetches over 0.55 s in flight
    assert (sn["pieces"], sn["bytes"], sn["first_request_s"]) == (4, 4 * MB, 0.0)
    assert sn["last_out_s"] == pytest.approx(0.55)
    assert sn["mean_mbit_s"] == pytest.approx(32 / 0.55)
    assert sn["mean_in_flight"] == pytest.approx(1.0 / 0.55)
    # 2 in flight to 0.35, 3 to 0.4 (b's piece 0 began), 1 to 0.55
    assert sn["in_flight"] == pytest.approx([0.0, 0.15 / 0.55, 0.35 / 0.55, 0.05 / 0.55])
    # bin 0: half of a's piece 0 and a quarter of its piece 1 (0.75 MB = 6 Mbit in 0.1 s);
    # bin 3: a quarter of a's 1, half of b's 2, a quarter of b's 0; bin 5: b's 0 up to 0.55
    assert sn["egress_mbit_s"] == pytest.approx([60, 60, 60, 80, 40, 20])
    # the link's payload at 100 Mbit/s: 1448 / 1514 of it
    assert sn["link_payload_mbit_s"] == pytest.approx(95.64, abs=0.01)
    assert sn["of_link_payload"] == pytest.approx(32 / 0.55 / (100 * 1448 / 1514))


def test_without_a_rate_the_supernode_is_not_measured_against_a_link():
    assert "of_link_payload" not in _report(rate=0.0)["supernode"]


def test_each_hosts_rates_count_only_good_pieces_while_it_downloaded():
    report = _report()
    a, b = _host(report, "a"), _host(report, "b")
    # a: 3 pieces (24 Mbit) from 0.0 to 0.7; sent b's relayed piece 1 (its failed 0 not counted)
    assert (a["first_request_s"], a["done_s"]) == (0.0, pytest.approx(0.7))
    assert a["receive_mbit_s"] == pytest.approx(24 / 0.7)
    assert a["send_mbit_s"] == pytest.approx(8 / 0.7)
    # b: 24 Mbit from 0.2 to 0.55; of a's piece 2 from it (0.5-0.7) a quarter falls before 0.55
    assert b["receive_mbit_s"] == pytest.approx(24 / 0.35)
    assert b["send_mbit_s"] == pytest.approx(2 / 0.35)


def test_body_rates_start_after_the_ramp_and_tail_rates_after_the_supernodes_last_piece():
    report = traces.analyse(traces.hosts_from(_two_hosts()), ramp_s=0.1)
    a = _host(report, "a")
    # 0.1-0.55: half of piece 0, three quarters of piece 1, a quarter of piece 2 (12 Mbit);
    # sent: b's relayed piece 1 (0.25-0.45), whole
    assert a["body_receive_mbit_s"] == pytest.approx(12 / 0.45)
    assert a["body_send_mbit_s"] == pytest.approx(8 / 0.45)
    # after 0.55: three quarters of piece 2 in 0.15 s
    assert a["tail_mbit_s"] == pytest.approx(6 / 0.15)
    assert _host(report, "b")["tail_mbit_s"] is None   # done when the supernode was
    # with the default 1 s ramp no host downloaded past it before the supernode's last piece
    assert _host(_report(), "a")["body_receive_mbit_s"] is None


def test_shares_in_flight_count_failed_attempts_and_go_up_to_the_most_seen():
    report = _report()
    # a: 2 in flight 0-0.2, 1 to 0.4, none to 0.5, 1 to 0.7
    assert _host(report, "a")["in_flight"] == pytest.approx([0.1 / 0.7, 0.4 / 0.7, 0.2 / 0.7])
    assert _host(report, "a")["parallel"] == 2
    # b: 1 (0.2-0.25, 0.45-0.55), 2 (0.25-0.3, 0.4-0.45), 3 with the failed one (0.3-0.4)
    assert _host(report, "b")["in_flight"] == pytest.approx([0.0, 0.15 / 0.35, 0.1 / 0.35, 0.1 / 0.35])


def test_tail_is_what_a_host_lacked_when_the_supernodes_last_piece_left():
    report = _report()
    # at 0.55 a held 0 and 1 (piece 2 came at 0.7): one piece lacking, 0.15 s of tail
    assert (_host(report, "a")["tail_pieces"], _host(report, "a")["tail_s"]) == (1, pytest.approx(0.15))
    # b's last piece was that last one from the supernode
    assert (_host(report, "b")["tail_pieces"], _host(report, "b")["tail_s"]) == (0, 0.0)
    assert report["file_pieces"] == 3 and report["last_done_s"] == pytest.approx(0.7)
    assert [r["name"] for r in report["per_host"]] == ["b", "a"]   # by when done


def test_refill_gaps_pair_each_start_with_the_first_freed_slot():
    report = _report()
    # a: two initial starts; ends at 0.2 and 0.4 wait; the start at 0.5 takes the one from 0.2
    assert _host(report, "a")["refill_gaps_s"] == pytest.approx([0.3])
    # b: three initial starts; the failed fetch's end at 0.35 is refilled at once
    assert _host(report, "b")["refill_gaps_s"] == pytest.approx([0.0])
    assert report["refill_gaps"] == 2
    assert report["refill_gap_median_s"] == pytest.approx(0.15)
    assert report["refill_gap_p90_s"] == pytest.approx(0.3)


def test_refill_gaps_of_one_slot_are_the_pauses_between_fetches():
    fetches = [Fetch(n, "supernode", MB, s, e, "supernode") for n, (s, e) in enumerate(
        [(0.0, 1.0), (1.25, 2.0), (2.0, 3.0), (3.5, 4.0)])]
    assert traces.refill_gaps(fetches) == pytest.approx([0.25, 0.0, 0.5])


def test_relayed_fetches_against_the_others():
    rel = _report()["relays"]
    assert rel["supernode"] == {"count": 4, "median_s": pytest.approx(0.2), "p90_s": pytest.approx(0.4)}
    assert rel["whole"]["count"] == 1 and rel["whole"]["median_s"] == pytest.approx(0.2)
    assert rel["relayed"]["count"] == 1 and rel["failed"]["count"] == 1
    assert rel["not_relayed"]["count"] == 5 and rel["not_relayed"]["median_s"] == pytest.approx(0.2)
    # b's relayed piece 1 ended 0.05 s after A's own (from the supernode: no chain)
    assert (rel["relays_known"], rel["chained"]) == (1, 0)
    assert rel["lag_median_s"] == pytest.approx(0.05)


def test_older_traces_tell_relays_and_chains_by_when_the_holders_copy_was_whole():
    hosts = traces.hosts_from([
        ("a", _trace("A", 0.0, [(0, "supernode", 0.0, 1.0, True, None)])),
        ("b", _trace("B", 0.1, [(0, "A", 0.2, 1.1, True, None)])),   # A's copy whole at 1.0: relayed
        ("c", _trace("C", 0.1, [(0, "B", 0.3, 1.3, True, None)])),   # from B while B fetched from A
        ("d", _trace("D", 0.1, [(0, "A", 1.2, 1.4, True, None)]))])  # after A's copy was whole
    assert [f.kind for h in hosts for f in h.fetches] == ["supernode", "relayed", "relayed", "whole"]
    rel = traces.relay_figures(hosts)
    assert (rel["relayed"]["count"], rel["relays_known"], rel["chained"]) == (2, 2, 1)
    # b ends 0.1 s after A's own fetch, c 0.2 s after B's
    assert rel["lag_median_s"] == pytest.approx(0.15) and rel["lag_p90_s"] == pytest.approx(0.2)


def test_a_relay_without_its_own_trace_is_counted_but_not_chained():
    hosts = traces.hosts_from([("b", _trace("B", 0.0, [(0, "X", 0.0, 1.0, True, True)]))])
    rel = traces.relay_figures(hosts)
    assert (rel["relayed"]["count"], rel["relays_known"], rel["lag_median_s"]) == (1, 0, None)


def test_schedule_calls_with_and_without_the_supernodes_hold():
    trace = _trace("A", 0.0, [(0, "supernode", 0.0, 0.2, True, False)])
    trace["schedules"] = [
        {"t": 0.5, "latency_s": 0.02, "waited_s": 0.0, "want": 4, "assigned": 1, "reported": 0},
        {"t": 0.6, "latency_s": 0.10, "waited_s": 0.06, "want": 1, "assigned": 1, "reported": 1},
        {"t": 0.7, "latency_s": 0.04, "waited_s": None, "want": 1, "assigned": 0, "reported": 0},
        {"t": 0.7, "latency_s": 0.03, "waited_s": None, "want": 0, "assigned": 0, "reported": 1,
         "reporter": True}]
    calls = traces.analyse(traces.hosts_from([("a", trace)]))["schedule_calls"]
    # asking calls 0.02, 0.10, 0.04 s; less the hold 0.02, 0.04, 0.04; one report-only call
    assert calls["count"] == 3 and calls["latency_median_s"] == pytest.approx(0.04)
    assert calls["latency_p90_s"] == pytest.approx(0.10)
    assert calls["own_median_s"] == pytest.approx(0.04) and calls["own_p90_s"] == pytest.approx(0.04)
    assert (calls["reports"], calls["report_median_s"]) == (1, pytest.approx(0.03))


def test_p90_is_the_nearest_rank():
    assert traces.p90([]) is None and traces.p90([5.0]) == 5.0
    assert traces.p90(list(range(1, 11))) == 9 and traces.p90(list(range(1, 12))) == 10


def test_a_host_that_never_registered_is_left_out():
    never = _trace("N", 0.0, [])
    never["events"] = never["events"][:1]
    hosts = traces.hosts_from(_two_hosts() + [("n", never)])
    assert [h.name for h in hosts] == ["a", "b"]


def _folder(tmp_path, name, named_traces):
    folder = tmp_path / name
    folder.mkdir()
    for host, trace in named_traces:
        (folder / (host + ".json")).write_text(json.dumps(trace))
    return str(folder)


def test_the_tool_prints_one_folder_and_compares_two(tmp_path, capsys):
    before = _folder(tmp_path, "before", _two_hosts())
    slower = _two_hosts()
    for p in slower[0][1]["pieces"]:
        p["end_s"] += 0.1
    after = _folder(tmp_path, "after", slower)
    assert traces.main([before, "--rate", "100"]) == 0
    text = capsys.readouterr().out
    assert "2 hosts, 3 pieces; last host done 0.70 s" in text
    assert "58.2 Mbit/s from its first request (0.00 s) = 61 % of the 95.6 Mbit/s payload" in text
    assert "   0.0 s   60  60  60  80  40  20" in text
    assert "slot refill gaps: 2, median 0.150 s, p90 0.300 s" in text
    assert "relayed 1 (median 0.20 s" in text and "0 of those relays were fed by a relay" in text

    assert traces.main([before, after]) == 0
    table = capsys.readouterr().out.split("\n\n")[-1]
    assert "last host done (s)" in table and "0.70        0.80       +0.10" in table


def test_the_tool_gives_json_and_refuses_an_empty_folder_in_one_line(tmp_path, capsys):
    folder = _folder(tmp_path, "run", _two_hosts())
    assert traces.main([folder, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)[folder]
    assert report["supernode"]["pieces"] == 4 and not math.isnan(report["refill_gap_p90_s"])
    empty = _folder(tmp_path, "empty", [])
    assert traces.main([empty]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no trace of a host that registered" in err


def test_the_timeline_colours_each_fetch_by_where_it_came_from():
    rows = {r["name"]: r for r in timeline.host_rows(_two_hosts())}
    assert [kind for _, _, kind in rows["a"]["pieces"]] == ["supernode", "supernode", "whole"]
    assert [kind for _, _, kind in rows["b"]["pieces"]] == ["supernode", "relayed", "failed", "supernode"]
    assert rows["b"]["from_peers"] == MB and rows["a"]["from_peers"] == MB
    drawn = timeline.svg(_two_hosts())
    assert drawn.count('class="piece relayed"') == 1 and timeline.COLOURS["relayed"] in drawn
    assert "relayed (cut-through)" in drawn
