"""The local detectors run over one text: secrets, personal data, custom rules.

``GuardEngine.scan`` is pure (no I/O, no clock) and returns the matches in text order, one per
value (overlaps resolved to the more specific category).
"""

from __future__ import annotations

from keyguard.guard.findings import Match

__all__ = ["GuardEngine"]


class GuardEngine:
    """All configured local detectors over one text (a placeholder until the detectors land:
    it finds nothing)."""

    def scan(self, text: str) -> list[Match]:
        return []
