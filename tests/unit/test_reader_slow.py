"""httpd's slow-reader rule (reader_slow, pure): a reader that took no byte for
PROGRESS_S is slow; one moving is slow only against the others the server is
sending to, under SLOW_SHARE of their median pace. A supernode feeding 16 peers
at once sends each at a sixteenth of its link: none of them is slow, however
long a piece takes (the rule by the clock alone sent every piece twice at 25
Mbit/s)."""
from dfly.httpd import PROGRESS_S, SLOW_SHARE, reader_slow


def test_a_reader_that_took_nothing_for_a_while_is_slow_alone_or_not():
    assert reader_slow(PROGRESS_S, 0.0, []) is True
    assert reader_slow(PROGRESS_S + 5, 1e6, [1e6, 1e6]) is True


def test_a_moving_reader_alone_is_not_slow_however_slowly():
    assert reader_slow(0.1, 10.0, []) is False


def test_readers_at_one_pace_are_not_slow():
    paces = [195e3] * 15   # 16 streams of a 25 Mbit/s link
    assert reader_slow(0.1, 195e3, paces) is False
    assert reader_slow(0.1, 190e3, paces) is False


def test_a_reader_far_under_the_others_median_is_slow():
    others = [2e6, 2e6, 3e6, 50e3]   # median 2e6: one other slow reader does not move it
    assert reader_slow(0.1, SLOW_SHARE * 2e6 * 0.9, others) is True
    assert reader_slow(0.1, SLOW_SHARE * 2e6 * 1.1, others) is False
