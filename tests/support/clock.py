"""A clock a test sets and moves instead of sleeping."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeClock:
    """Called like ``time.time``; a test moves it with :meth:`advance` (or sets ``now``)."""

    now: float = 1_800_000_000.0  # on a minute boundary (divisible by 60)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
