"""The short windows: :class:`Recent` skips its sweep while nothing can have expired, and
counts exactly as when it swept on every sighting (a clock stepping back included)."""

from __future__ import annotations

import random

import pytest

from keyguard.detect.windows import Peak, Recent


class SweepEveryTime:
    """What :class:`Recent` did before: the same window, swept on every sighting."""

    def __init__(self, span: float, cap: int) -> None:
        self.seen: dict[str, float] = {}
        self.span, self.cap = span, cap

    def add(self, value: str, now: float) -> None:
        last = self.seen.get(value)
        if last is not None and now - last < self.span / 128:
            return
        self.seen.pop(value, None)
        self.seen[value] = now
        cutoff = now - self.span
        while self.seen:
            first = next(iter(self.seen))
            if self.seen[first] >= cutoff and len(self.seen) <= self.cap:
                break
            del self.seen[first]


@pytest.mark.parametrize("seed", range(20))
def test_recent_counts_as_a_window_swept_every_time(seed: int) -> None:
    rng = random.Random(seed)
    span, cap = rng.choice([(60.0, 256), (600.0, 8), (5.0, 3)])
    recent, reference = Recent(span, cap), SweepEveryTime(span, cap)
    now = 1_800_000_000.0
    for _ in range(3000):
        # mostly forward, by up to two spans; now and then a step back (a clock set back)
        now += rng.choice([0.0, 0.01, 1.0, span / 3, span * 2, -span / 2])
        value = f"v{rng.randrange(12)}"
        recent.add(value, now)
        reference.add(value, now)
        assert recent._seen == reference.seen  # the same values, times and order
        probe = f"v{rng.randrange(14)}"
        assert recent.count(now, probe) == _count(reference, now, probe)


def _count(reference: SweepEveryTime, now: float, extra: str) -> int:
    cutoff = now - reference.span
    n = 0
    for t in reversed(reference.seen.values()):
        if t < cutoff:
            break
        n += 1
    return n + (reference.seen.get(extra, cutoff - 1) < cutoff)


def test_a_peak_decays_by_half_every_half_life_and_not_before_it_was_set() -> None:
    peak = Peak(100.0, value=8.0, at=1000.0)
    assert peak.current(1000.0) == 8.0 and peak.current(900.0) == 8.0  # a clock set back
    assert peak.current(1100.0) == pytest.approx(4.0)
    assert peak.current(1300.0) == pytest.approx(1.0)
    assert Peak(100.0).current(5.0) == 0.0
