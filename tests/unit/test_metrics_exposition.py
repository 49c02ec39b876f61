"""The Prometheus text exposition (0.0.4) dfly.metrics writes, and its counting."""
import re
import threading

import pytest

from dfly.metrics import Registry


def test_every_family_has_help_and_type_before_its_samples():
    r = Registry()
    r.counter("dfly_things_total", "Things seen").inc(3)
    r.gauge("dfly_level", "A level").set(2.5)
    text = r.exposition()
    assert text == ("# HELP dfly_things_total Things seen\n# TYPE dfly_things_total counter\n"
                    "dfly_things_total 3\n"
                    "# HELP dfly_level A level\n# TYPE dfly_level gauge\ndfly_level 2.5\n")


def test_labelled_counter_writes_one_sample_per_label_set_sorted():
    r = Registry()
    c = r.counter("dfly_bytes_total", "Bytes", ("source",))
    c.labels("peer").inc(10)
    c.labels("source").inc(5)
    c.labels("peer").inc(1)
    samples = [line for line in r.exposition().splitlines() if not line.startswith("#")]
    assert samples == ['dfly_bytes_total{source="peer"} 11', 'dfly_bytes_total{source="source"} 5']


def test_a_family_without_samples_still_has_its_help_and_type():
    r = Registry()
    r.counter("dfly_failures_total", "Failures", ("reason",))
    assert r.exposition() == "# HELP dfly_failures_total Failures\n# TYPE dfly_failures_total counter\n"


def test_label_values_and_help_are_escaped():
    r = Registry()
    r.counter("dfly_odd_total", 'Help with \\ and\nnewline', ("what",)).labels('a"b\\c\nd').inc()
    lines = r.exposition().splitlines()
    assert lines[0] == "# HELP dfly_odd_total Help with \\\\ and\\nnewline"
    assert lines[2] == 'dfly_odd_total{what="a\\"b\\\\c\\nd"} 1'


def test_histogram_buckets_are_cumulative_with_inf_sum_and_count():
    r = Registry()
    h = r.histogram("dfly_wait_seconds", "Waits", ("result",), buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 0.7, 5.0):
        h.labels("ok").observe(value)
    samples = [line for line in r.exposition().splitlines() if not line.startswith("#")]
    assert samples == ['dfly_wait_seconds_bucket{result="ok",le="0.1"} 1',
                       'dfly_wait_seconds_bucket{result="ok",le="1"} 3',
                       'dfly_wait_seconds_bucket{result="ok",le="+Inf"} 4',
                       'dfly_wait_seconds_sum{result="ok"} 6.25',
                       'dfly_wait_seconds_count{result="ok"} 4']


def test_a_read_family_shows_what_its_callback_returns_at_scrape_time():
    r = Registry()
    state = {"live": 1}
    r.gauge("dfly_live", "Live", read=lambda: {(): state["live"]})
    r.counter("dfly_by_kind_total", "Kinds", ("kind",), read=lambda: {("b",): 2, ("a",): 7})
    state["live"] = 4
    text = r.exposition()
    assert "\ndfly_live 4\n" in text
    assert 'dfly_by_kind_total{kind="a"} 7\ndfly_by_kind_total{kind="b"} 2\n' in text


def test_counts_from_many_threads_add_up_without_a_lock():
    r = Registry()
    c = r.counter("dfly_hits_total", "Hits")
    threads = [threading.Thread(target=lambda: [c.inc(3) for _ in range(20000)], name="inc-%d" % i)
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert "\ndfly_hits_total 480000\n" in r.exposition()


def test_one_name_registered_twice_and_wrong_label_counts_are_refused():
    r = Registry()
    c = r.counter("dfly_x_total", "X", ("a",))
    with pytest.raises(ValueError):
        r.gauge("dfly_x_total", "again")
    with pytest.raises(ValueError):
        c.labels("one", "two")


def test_numbers_are_written_as_prometheus_reads_them():
    r = Registry()
    for name, value in (("dfly_big", 1 << 40), ("dfly_half", 0.5), ("dfly_inf", float("inf"))):
        r.gauge(name, name).set(value)
    samples = [line for line in r.exposition().splitlines() if not line.startswith("#")]
    assert samples == ["dfly_big 1099511627776", "dfly_half 0.5", "dfly_inf +Inf"]
    assert all(re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]* ", s) for s in samples)
