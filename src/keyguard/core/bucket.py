"""A token bucket: ``burst`` tokens, refilled at ``rate`` a second (pure: the time is passed in).

What a flood is measured against wherever one is (the replica bus's messages, lookups of
unknown key ids, sign-in attempts at the console). Time that runs backwards refills nothing: the
bucket's time only moves forward, so a clock stepped back cannot count the same seconds twice.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    __slots__ = ("tokens", "at", "burst", "rate")

    def __init__(self, burst: float, rate: float, now: float) -> None:
        self.tokens = burst  # a new bucket is full
        self.at = now
        self.burst = burst
        self.rate = rate

    def refill(self, now: float) -> float:
        """The tokens at ``now``."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = max(self.at, now)
        return self.tokens

    def take(self, now: float) -> bool:
        """Take one token at ``now``; ``False`` (nothing taken) when there is none."""
        if self.refill(now) < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def give_back(self, now: float) -> None:
        """Return a token taken, at ``now`` (never above ``burst``)."""
        self.tokens = min(self.burst, self.refill(now) + 1.0)
