"""Personal data in a text: validated numbers (``pii_numbers``) and contact data
(``pii_contact``), the numeric ones looked for only in the windows ``keyguard.guard.windows``
finds (most prose has none), and each only where :mod:`keyguard.guard.gate` says it can find
anything."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from keyguard.guard.findings import Match
from keyguard.guard.gate import EMAIL, IPV6, NUMBERS
from keyguard.guard.pii_contact import contact_matches
from keyguard.guard.pii_numbers import number_matches
from keyguard.guard.windows import find_windows

__all__ = ["PersonalDetectors"]


class PersonalDetectors:
    """The personal-data detectors; ``regions`` are where national phone numbers are read."""

    def __init__(self, regions: Sequence[str]) -> None:
        self._regions = tuple(regions)

    def matches(self, text: str, gates: int = NUMBERS | EMAIL | IPV6) -> Iterator[Match]:
        """The personal data in ``text``; ``gates`` (:func:`keyguard.guard.gate.gates`) says
        which detectors can find anything (the others are skipped)."""
        if gates & NUMBERS:
            windows, codes = find_windows(text)
            yield from number_matches(text, windows, codes)
        else:
            windows = []
        yield from contact_matches(
            text, windows, self._regions, emails=bool(gates & EMAIL), ipv6=bool(gates & IPV6)
        )
