"""get --trace's record, with a hand-driven clock."""
import os

import pytest

from dfly.errors import LocalIOError
from dfly.peer.trace import Trace, check_trace_path, write_trace


def test_trace_times_count_from_the_start_given():
    ticks = iter([10.0, 10.5, 11.0])
    trace = Trace(started=9.0, clock=lambda: next(ticks), wall=lambda: 1000.0)
    trace.schedule(10.5, 11.0, 0.2, 4, 2, 0)
    record = trace.record()
    assert record["wall_start"] == 999.0   # the Unix time of `started`
    assert record["schedules"] == [{"t": 1.5, "latency_s": 0.5, "waited_s": 0.2, "want": 4,
                                    "assigned": 2, "reported": 0}]


def test_trace_hides_the_urls_secrets(tmp_path):
    trace = Trace()
    trace.described(url="http://u:p@origin/f?sig=abc")
    path = str(tmp_path / "t.json")
    write_trace(trace, path)
    text = open(path).read()
    assert "abc" not in text and "u:p" not in text and os.listdir(str(tmp_path)) == ["t.json"]


def test_trace_path_in_a_missing_folder_or_a_folder_is_refused(tmp_path):
    with pytest.raises(LocalIOError):
        check_trace_path(str(tmp_path / "missing" / "t.json"))
    with pytest.raises(LocalIOError):
        check_trace_path(str(tmp_path))
    assert check_trace_path(str(tmp_path / "t.json")) == str(tmp_path / "t.json")


def test_trace_marks_a_piece_fetched_from_a_relay():
    ticks = iter([0.0, 1.0, 2.0])
    trace = Trace(started=0.0, clock=lambda: next(ticks), wall=lambda: 1000.0)
    trace.piece(3, "peer-a", "127.0.0.1:1", 10, 1.0, 1.5, 1.5)
    trace.piece(4, "peer-b", "127.0.0.1:2", 10, 1.0, 2.0, 2.0, error="relay stopped", relay=True)
    whole, relayed = trace.record()["pieces"]
    assert whole["relay"] is False and whole["ok"] is True
    assert relayed["relay"] is True and relayed["ok"] is False
