"""Personal data in a text (placeholder until the validated detectors land)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from keyguard.guard.findings import Match

__all__ = ["PersonalDetectors"]


class PersonalDetectors:
    def __init__(self, regions: Sequence[str]) -> None:
        self._regions = tuple(regions)

    def matches(self, text: str) -> Iterator[Match]:
        return iter(())
