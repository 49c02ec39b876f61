"""The token bucket, driven by a manual `now`: a one-second burst, then the rate."""
import pytest

from dfly.protocol.ratelimit import TokenBucket


def test_a_full_second_of_burst_is_available_at_once():
    bucket = TokenBucket(1000, now=0.0)
    assert bucket.reserve(1000, now=0.0) == 0.0


def test_taking_more_than_the_tokens_returns_the_time_to_wait():
    bucket = TokenBucket(1000, now=0.0)
    assert bucket.reserve(1500, now=0.0) == pytest.approx(0.5)


def test_debt_accumulates_across_reservations():
    bucket = TokenBucket(100, now=0.0)
    assert bucket.reserve(100, now=0.0) == 0.0
    assert bucket.reserve(50, now=0.0) == pytest.approx(0.5)
    assert bucket.reserve(50, now=0.0) == pytest.approx(1.0)


def test_tokens_refill_at_the_rate():
    bucket = TokenBucket(100, now=0.0)
    bucket.reserve(100, now=0.0)
    assert bucket.reserve(25, now=0.25) == 0.0
    assert bucket.reserve(25, now=0.25) == pytest.approx(0.25)


def test_refill_is_capped_at_one_second_of_burst():
    bucket = TokenBucket(100, now=0.0)
    bucket.reserve(100, now=0.0)
    assert bucket.reserve(100, now=3600.0) == 0.0
    assert bucket.reserve(1, now=3600.0) == pytest.approx(0.01)


def test_paying_the_wait_brings_the_bucket_back_to_empty():
    bucket = TokenBucket(100, now=0.0)
    wait = bucket.reserve(300, now=0.0)
    assert wait == pytest.approx(2.0)
    assert bucket.reserve(100, now=0.0 + wait) == pytest.approx(1.0)


def test_the_long_run_rate_is_the_configured_rate():
    bucket, now, sent = TokenBucket(1000, now=0.0), 0.0, 0
    for _ in range(100):
        now += bucket.reserve(250, now)
        sent += 250
    # 25000 bytes at 1000 B/s with a 1000-byte head start
    assert now == pytest.approx(24.0)
    assert sent == 25000


@pytest.mark.parametrize("rate", [0, -1])
def test_a_rate_of_zero_or_less_means_unlimited(rate):
    bucket = TokenBucket(rate, now=0.0)
    assert bucket.reserve(10 ** 12, now=0.0) == 0.0
    assert bucket.reserve(10 ** 12, now=0.0) == 0.0


def test_a_stale_now_from_a_slower_thread_earns_no_extra_tokens():
    bucket = TokenBucket(100, now=10.0)
    assert bucket.reserve(100, now=10.0) == 0.0      # empty at t=10
    bucket.reserve(0, now=5.0)                       # a thread that read the clock earlier
    assert bucket.reserve(100, now=10.0) == pytest.approx(1.0)


def test_a_counting_bucket_gives_its_burst_then_its_rate():
    bucket = TokenBucket(2.0, 0.0, burst=5)   # 2 a second, 5 at once
    assert [bucket.take(1, 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(1, 0.5) and not bucket.take(1, 0.5)
    assert not bucket.full(0.5) and bucket.full(3.0)
