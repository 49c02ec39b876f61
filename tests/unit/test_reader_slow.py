"""httpd's slow-reader rule (reader_slow, pure): a reader that took no byte for
PROGRESS_S is slow; one moving is slow only against the others the server is
sending to, under SLOW_SHARE of their median pace. A supernode feeding 16 peers
at once sends each at a sixteenth of its link: none of them is slow, however
long a piece takes (the rule by the clock alone sent every piece twice at 25
Mbit/s), nor, on a busy link, still for a while when still is how TCP's
trickles go, nor behind at first by less than STILL_BYTES (a stream begun
among busy ones). And how long one may take no byte before its body is cut
(stall_limit)."""
from dfly.httpd import (
    PROGRESS_S,
    SLOW_SHARE,
    STALLED_MAX_S,
    STALLED_SEND_S,
    STALLED_SHARE,
    STILL_BYTES,
    reader_slow,
    stall_limit,
)

MB = 1000 * 1000


def test_a_reader_that_took_nothing_for_a_while_is_slow_alone_or_not():
    assert reader_slow(PROGRESS_S, 0, 5.0, []) is True
    assert reader_slow(PROGRESS_S + 5, 6 * MB, 6.0, [1e6, 1e6]) is True


def test_a_moving_reader_alone_is_not_slow_however_slowly():
    assert reader_slow(0.1, 50, 5.0, []) is False


def test_readers_at_one_pace_are_not_slow():
    paces = [195e3] * 15   # 16 streams of a 25 Mbit/s link
    assert reader_slow(0.1, 195e3 * 4, 4.0, paces) is False
    assert reader_slow(0.1, 190e3 * 4, 4.0, paces) is False


def test_a_reader_far_under_the_others_median_is_slow():
    others = [2e6, 2e6, 3e6, 50e3]   # median 2e6: one other slow reader does not move it
    share = SLOW_SHARE * 2e6 * 3.0    # in 3 s
    assert reader_slow(0.1, share - STILL_BYTES - 1000, 3.0, others) is True
    assert reader_slow(0.1, share - STILL_BYTES + 1000, 3.0, others) is False


def test_a_trickle_among_trickles_may_be_still_for_a_while():
    paces = [49e3] * 15   # 16 streams of a 6.25 Mbit/s link: TCP backs off for seconds
    assert reader_slow(2.0, 49e3 * 10, 12.0, paces) is False
    assert reader_slow(STILL_BYTES / 49e3 + 0.1, 49e3 * 10, 16.0, paces) is True


def test_trickles_on_an_idle_link_are_not_forgiven_stillness():
    """Four streams of one peer reading at 100 KB/s in all (a rate limit), on a
    server whose last bodies went at 300 MB/s: the readers are the limit, and
    one still for a second is slow, as it holds a slot the link could use."""
    paces = [25e3] * 3
    assert reader_slow(PROGRESS_S + 0.1, 25e3 * 10, 10.0, paces, recent_best=300e6) is True
    assert reader_slow(PROGRESS_S + 0.1, 25e3 * 10, 10.0, paces, recent_best=0.0) is False   # busy
    assert reader_slow(2.0, 49e3 * 10, 12.0, [49e3] * 15, recent_best=780e3) is False   # shared


def test_a_stream_begun_among_busy_ones_is_forgiven_a_slow_start():
    """Three seconds in, one of 16 streams on a 6.25 Mbit/s link has taken 8 KB
    (slow start after idle, a loss in the full queue): not yet slow; one still
    that far behind after a piece's time (~20 s) is."""
    paces = [49e3] * 15
    assert reader_slow(0.5, 8000, 3.0, paces) is False
    assert reader_slow(0.5, 8000, 25.0, paces) is True


# How long a reader may take no byte before its body is cut (stall_limit) --------------

def test_a_reader_alone_is_cut_after_the_plain_stall_limit():
    assert stall_limit([]) == STALLED_SEND_S
    assert stall_limit([0.0, 0.0]) == STALLED_SEND_S   # the others are still too


def test_beside_fast_streams_the_limit_stays():
    assert stall_limit([780e3] * 15) == STALLED_SEND_S   # 16 streams of a 100 Mbit/s link


def test_beside_slow_streams_it_waits_as_long_as_they_take_for_still_bytes_twice():
    # 16 streams of a 1.5 Mbit/s link: ~11.7 KB/s each; TCP backing off stills one past 10 s
    assert stall_limit([11.7e3] * 15) == STALLED_SHARE * STILL_BYTES / 11.7e3
    assert stall_limit([11.7e3] * 15) > 40


def test_never_longer_than_the_net():
    assert stall_limit([100.0] * 3) == STALLED_MAX_S
