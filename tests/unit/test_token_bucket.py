"""The token bucket, driven by a manual `now`: it starts empty, holds a tenth of a
second of burst, and the limit holds over any window longer than a second."""
import pytest

from dfly.protocol.ratelimit import TokenBucket


def test_a_new_bucket_starts_empty():
    bucket = TokenBucket(1000, now=0.0)
    assert bucket.reserve(1000, now=0.0) == pytest.approx(1.0)


def test_taking_more_than_the_tokens_returns_the_time_to_wait():
    bucket = TokenBucket(1000, now=0.0)
    assert bucket.reserve(150, now=1.0) == pytest.approx(0.05)


def test_debt_accumulates_across_reservations():
    bucket = TokenBucket(100, now=0.0)
    assert bucket.reserve(50, now=0.0) == pytest.approx(0.5)
    assert bucket.reserve(50, now=0.0) == pytest.approx(1.0)


def test_tokens_refill_at_the_rate():
    bucket = TokenBucket(100, now=0.0)
    assert bucket.reserve(5, now=0.05) == 0.0
    assert bucket.reserve(5, now=0.05) == pytest.approx(0.05)


def test_refill_is_capped_at_a_tenth_of_a_second_of_burst():
    bucket = TokenBucket(100, now=0.0)
    assert bucket.reserve(10, now=3600.0) == 0.0
    assert bucket.reserve(1, now=3600.0) == pytest.approx(0.01)


def test_paying_the_wait_brings_the_bucket_back_to_empty():
    bucket = TokenBucket(100, now=0.0)
    wait = bucket.reserve(300, now=0.0)
    assert wait == pytest.approx(3.0)
    assert bucket.reserve(100, now=0.0 + wait) == pytest.approx(1.0)


def test_the_long_run_rate_is_the_configured_rate():
    bucket, now, sent = TokenBucket(1000, now=0.0), 0.0, 0
    for _ in range(100):
        now += bucket.reserve(250, now)
        sent += 250
    # 25000 bytes at 1000 B/s, the last 250 taken before their wait
    assert now == pytest.approx(25.0)
    assert sent == 25000


@pytest.mark.parametrize("chunk", [1000, 64 * 1024, 1 << 20])
def test_the_limit_holds_over_every_window_longer_than_a_second(chunk):
    """A reader that reads a chunk, then waits what the bucket says (as the downloads do),
    and sometimes idles: in no window of 1 s or more does it beat the rate by more than
    the burst and the chunk in hand."""
    rate = 20 * (1 << 20)
    bucket, now, arrivals = TokenBucket(rate, now=0.0), 0.0, []
    for i in range(400):
        arrivals.append((now, chunk))
        now += bucket.reserve(chunk, now)
        if i % 50 == 49:
            now += 2.0   # idle: the bucket refills, but only up to the burst
    for start, _ in arrivals:
        for window in (1.0, 1.5, 3.0):
            got = sum(n for t, n in arrivals if start <= t < start + window)
            assert got <= rate * (window + 0.1) + chunk


@pytest.mark.parametrize("rate", [0, -1])
def test_a_rate_of_zero_or_less_means_unlimited(rate):
    bucket = TokenBucket(rate, now=0.0)
    assert bucket.reserve(10 ** 12, now=0.0) == 0.0
    assert bucket.reserve(10 ** 12, now=0.0) == 0.0


def test_a_stale_now_from_a_slower_thread_earns_no_extra_tokens():
    bucket = TokenBucket(100, now=10.0)
    assert bucket.reserve(10, now=10.5) == pytest.approx(0.0)   # empty at t=10.5
    bucket.reserve(0, now=5.0)                       # a thread that read the clock earlier
    assert bucket.reserve(100, now=10.5) == pytest.approx(1.0)


def test_a_bucket_given_a_burst_holds_that_many_from_the_start():
    bucket = TokenBucket(2.0, 0.0, burst=5)   # counting things: 2 a second, 5 at once
    assert [bucket.reserve(1, 0.0) for _ in range(5)] == [0.0] * 5
    assert bucket.reserve(1, 0.0) == pytest.approx(0.5)


def test_a_counting_bucket_gives_its_burst_then_its_rate():
    bucket = TokenBucket(2.0, 0.0, burst=5)   # 2 a second, 5 at once
    assert [bucket.take(1, 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(1, 0.5) and not bucket.take(1, 0.5)
    assert not bucket.full(0.5) and bucket.full(3.0)


def test_a_bucket_left_with_a_fraction_of_a_token_asks_no_wait():
    bucket = TokenBucket(rate_bytes_per_s=10, now=0.0)   # holds 1 byte's worth
    assert bucket.reserve(0, now=0.05) == 0.0   # half a token in hand: no wait, never a negative one


def test_a_counting_bucket_is_full_only_once_refilled_to_its_burst():
    bucket = TokenBucket(rate_bytes_per_s=2, now=100.0, burst=120)
    assert bucket.take(1, now=100.0)
    assert not bucket.full(100.0) and not bucket.full(100.4)
    assert bucket.full(100.5)
