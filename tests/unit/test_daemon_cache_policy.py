"""What the daemon's cache deletes: too old first, then least recently used
until under the size limit; never an entry in use."""
from dfly.peer.cache import choose_cleanup
from dfly.supernode.eviction import CacheEntry


def _entries():
    return [CacheEntry("old", 10, 100.0, True), CacheEntry("mid", 10, 500.0, True),
            CacheEntry("new", 10, 900.0, True), CacheEntry("busy", 10, 50.0, False)]


def test_entries_unused_longer_than_the_age_limit_go_even_under_the_size_limit():
    assert choose_cleanup(_entries(), 1000, max_age_s=600, now=1000.0) == ["old"]


def test_no_age_limit_and_room_to_spare_deletes_nothing():
    assert choose_cleanup(_entries(), 1000, max_age_s=0, now=1e9) == []


def test_over_the_size_limit_the_least_recently_used_go_first_and_busy_ones_stay():
    assert choose_cleanup(_entries(), 20, max_age_s=0, now=1000.0) == ["old", "mid"]
    assert choose_cleanup(_entries(), 0, max_age_s=0, now=1000.0) == ["old", "mid", "new"]


def test_age_and_size_combine_without_deleting_twice():
    assert choose_cleanup(_entries(), 10, max_age_s=600, now=1000.0) == ["old", "mid", "new"]
