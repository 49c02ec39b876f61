"""Cache eviction: least recently used first, never a task still in use."""
from dfly.supernode.eviction import CacheEntry, choose_evictions


def entry(name, size, last_used, evictable=True):
    return CacheEntry(name, size, last_used, evictable)


def test_nothing_is_evicted_when_the_cache_fits():
    entries = [entry("a", 10, 1.0), entry("b", 20, 2.0)]
    assert choose_evictions(entries, 30) == []
    assert choose_evictions(entries, 1000) == []


def test_nothing_is_evicted_from_an_empty_cache():
    assert choose_evictions([], 0) == []


def test_the_least_recently_used_go_first_until_it_fits():
    entries = [entry("new", 10, 30.0), entry("old", 10, 10.0), entry("mid", 10, 20.0)]
    assert choose_evictions(entries, 25) == ["old"]
    assert choose_evictions(entries, 15) == ["old", "mid"]
    assert choose_evictions(entries, 0) == ["old", "mid", "new"]


def test_eviction_stops_as_soon_as_the_total_fits():
    entries = [entry("big-old", 100, 1.0), entry("small", 1, 2.0), entry("newer", 5, 3.0)]
    assert choose_evictions(entries, 10) == ["big-old"]


def test_entries_in_use_are_never_evicted_but_still_count():
    entries = [entry("busy", 50, 1.0, evictable=False), entry("old", 10, 2.0), entry("new", 10, 3.0)]
    assert choose_evictions(entries, 60) == ["old"]
    assert choose_evictions(entries, 20) == ["old", "new"]


def test_when_only_entries_in_use_remain_the_limit_may_stay_exceeded():
    entries = [entry("busy", 50, 1.0, evictable=False), entry("idle", 10, 2.0)]
    assert choose_evictions(entries, 5) == ["idle"]


def test_equal_ages_keep_the_given_order():
    entries = [entry("x", 10, 5.0), entry("y", 10, 5.0), entry("z", 10, 5.0)]
    assert choose_evictions(entries, 15) == ["x", "y"]
