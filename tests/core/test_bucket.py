"""The token bucket the bus, the key index and the console's throttle share."""

from __future__ import annotations

from keyguard.core.bucket import TokenBucket


def test_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(3, 0.5, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(101.0)  # half a token
    assert bucket.take(102.0) and not bucket.take(102.0)


def test_a_clock_stepped_back_refills_nothing_then_or_later() -> None:
    bucket = TokenBucket(2, 1.0, now=100.0)
    assert bucket.take(100.0) and bucket.take(100.0)
    assert not bucket.take(40.0)  # sixty seconds back
    assert not bucket.take(100.0)  # and back to where it was: still nothing
    assert bucket.take(101.0)


def test_a_token_given_back_never_exceeds_the_burst() -> None:
    bucket = TokenBucket(2, 1.0, now=0.0)
    bucket.give_back(0.0)
    assert bucket.tokens == 2
    assert bucket.take(0.0)
    bucket.give_back(10.0)
    assert bucket.tokens == 2
