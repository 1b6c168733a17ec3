"""Personal data in a text: validated numbers (``pii_numbers``) and contact data
(``pii_contact``), the numeric ones looked for only in the windows ``keyguard.guard.windows``
finds (most prose has none)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from keyguard.guard.findings import Match
from keyguard.guard.pii_contact import contact_matches
from keyguard.guard.pii_numbers import number_matches
from keyguard.guard.windows import find_windows

__all__ = ["PersonalDetectors"]


class PersonalDetectors:
    """The personal-data detectors; ``regions`` are where national phone numbers are read."""

    def __init__(self, regions: Sequence[str]) -> None:
        self._regions = tuple(regions)

    def matches(self, text: str) -> Iterator[Match]:
        windows, codes = find_windows(text)
        yield from number_matches(text, windows, codes)
        yield from contact_matches(text, windows, self._regions)
