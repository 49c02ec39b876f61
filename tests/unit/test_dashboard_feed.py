"""The dashboard feed's pure shaping: piece maps, pages, rates, totals, events,
and a task of a thousand peers staying a small reply."""
import json

from dfly.peer.daemon_dashboard import Traffic, traffic_for
from dfly.supernode.dashboard import (
    HELD,
    IN_FLIGHT,
    MAP_CELLS,
    MAX_PAGE,
    NONE,
    PART,
    Events,
    cell_bounds,
    events_shown,
    page_of,
    piece_cells,
    rarest_per_cell,
    rate_bytes_per_s,
    task_detail,
    task_row,
)
from dfly.supernode.scheduler import SchedulerConfig
from dfly.supernode.task import Task


def test_small_task_has_one_cell_per_piece():
    assert piece_cells(5, {0, 3}, {1}) == HELD + IN_FLIGHT + NONE + HELD + NONE


def test_large_task_folds_its_pieces_into_bounded_cells():
    bounds = cell_bounds(1000, 256)
    assert len(bounds) == 256 and bounds[0][0] == 0 and bounds[-1][1] == 1000
    assert all(lo < hi for lo, hi in bounds)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))   # no piece lost or doubled
    cells = piece_cells(1000, set(range(500)), {999})
    assert len(cells) == 256 and cells[0] == HELD and cells[-1] == IN_FLIGHT
    assert PART in piece_cells(1000, {0}, ())


def test_rarest_per_cell_is_the_weakest_piece_of_the_cell():
    assert rarest_per_cell([3, 1, 4, 4], cells=2) == [1, 4]


def test_rate_is_over_the_download_once_done_and_until_now_while_running():
    assert rate_bytes_per_s(100, joined_at=10.0, last_piece_at=12.0, now=20.0, done=True) == 50.0
    assert rate_bytes_per_s(100, joined_at=10.0, last_piece_at=12.0, now=20.0, done=False) == 10.0
    assert rate_bytes_per_s(100, joined_at=10.0, last_piece_at=0.0, now=10.0, done=False) == 0.0


def test_page_is_slowest_first_and_bounded():
    rows = [{"peer_id": "p%03d" % i, "held": i % 7} for i in range(500)]
    page = page_of(rows, 0, 10)
    assert [r["held"] for r in page] == [0] * 10
    assert len(page_of(rows, 0, 10 ** 6)) == MAX_PAGE
    assert page_of(rows, 495, 50) == sorted(rows, key=lambda r: (r["held"], r["peer_id"]))[495:]
    assert page_of(rows, -5, 3) == page_of(rows, 0, 3)


def test_events_keep_only_the_newest():
    events = Events(clock=lambda: 7.0, kept=3)
    for i in range(5):
        events.record("peer_blacklisted", "peer %d" % i, "t")
    assert [e["text"] for e in events.last()] == ["peer 2", "peer 3", "peer 4"]
    assert [e["n"] for e in events.last(2)] == [4, 5] and events.last(0) == []


def _task_of(peers: int, pieces: int, tmp_path) -> Task:
    task = Task("a" * 64, "http://origin/f?sig=secret", {"Authorization": "x"}, None,
                str(tmp_path), SchedulerConfig())
    task.length, task.piece_size, task.geometry_known = pieces * 4096, 4096, True
    task.digests = ["0" * 64] * pieces
    sched = task.scheduler
    for num in range(pieces):
        sched.piece_available(num)
    for i in range(peers):
        sched.peer_joined("peer%04d" % i, ("127.0.0.1", 10000 + i), now=0.0)
        for num in range(i % min(pieces, 16)):
            sched.piece_done("peer%04d" % i, num, now=1.0)
    return task


def test_a_thousand_peers_on_a_task_make_a_small_reply(tmp_path):
    task = _task_of(1000, 1000, tmp_path)
    detail = task_detail(task, now=2.0, offset=0, limit=50, supernode_name="sn")
    assert len(detail["peers"]) == 50 and detail["totals"]["peers"] == 1000
    assert all(len(p["map"]) == MAP_CELLS for p in detail["peers"])
    assert detail["peers"][0]["held"] == 0   # slowest first
    assert len(detail["rarest"]) == MAP_CELLS
    assert len(json.dumps(detail)) < 64 * 1024   # whatever the swarm's size
    everyone = task_detail(task, now=2.0, offset=0, limit=10 ** 6, supernode_name="sn")
    assert len(everyone["peers"]) == MAX_PAGE


def test_task_row_shows_no_secret(tmp_path):
    task = _task_of(2, 4, tmp_path)
    task.error = "origin said no to http://origin/f?sig=secret"
    row = task_row(task)
    assert "secret" not in json.dumps(row) and "Authorization" not in json.dumps(row)
    assert row["peers"] == 2 and row["piece_count"] == 4


def test_daemon_traffic_targets_go_only_to_its_own_host():
    traffic = Traffic(clock=lambda: 1.0)
    traffic.answered("proxy", "GET", "http://origin/f?sig=abc", 200)
    traffic.answered("mirror", "GET", "/v2/x/blobs/sha256:00", 404)
    shown = traffic.shown()
    assert [r["target"] for r in shown["recent"]] == ["http://origin/f?sig=***", "/v2/x/blobs/sha256:00"]
    assert {(c["kind"], c["outcome"]) for c in shown["counts"]} == {("proxy", "ok"),
                                                                     ("mirror", "client_error")}
    assert [r["target"] for r in traffic_for(traffic.shown(), authorised=False)["recent"]] == [None, None]


def test_events_naming_a_url_say_only_their_kind_to_others():
    events = [{"kind": "task_failed", "text": "SourceError: http://o/f"},
              {"kind": "peer_blacklisted", "text": "peer p after 5 errors"}]
    assert [e["text"] for e in events_shown(events, authorised=False)] == ["the task failed",
                                                                            "peer p after 5 errors"]
    assert events_shown(events, authorised=True) == events
