"""The local detectors run over one text: secrets, personal data, custom rules.

``GuardEngine.scan`` is pure (no I/O, no clock) and returns the matches in text order, one per
value: where two matches overlap, a secret wins over a custom rule, a custom rule over
personal data, and within secrets the scanner's more specific kind (``PRIORITY``).

Work is bounded: a text is read up to ``max_text_chars`` (the rest is one ``unscanned``
match, family ``secret``, so the default actions block what was not read), and
``scan_slots`` reads at most ``max_request_chars`` of a request's texts in all (texts beyond
it are ``unscanned`` whole). At most ``max_matches`` matches are kept per text.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from keyguard.guard.custom import CustomRules
from keyguard.guard.findings import Match, Slot
from keyguard.guard.normalize import prepare
from keyguard.guard.personal import PersonalDetectors
from keyguard.guard.secrets import secret_matches
from keyguard.guard.settings import GuardSettings

__all__ = ["GuardEngine", "UNSCANNED"]

UNSCANNED = "unscanned"
_BATCH = 64 * 1024  # characters of slots scanned in one pass
_FAMILY_RANK = {"secret": 0, "custom": 1, "personal": 2}


def _resolve(found: list[tuple[tuple[int, int], Match]], limit: int) -> list[Match]:
    """Non-overlapping matches: the best rank first, then the earliest, then the longest."""
    found.sort(key=lambda f: (f[0], f[1].start, f[1].start - f[1].end))
    kept: list[Match] = []
    for _, m in found:
        if all(m.end <= k.start or m.start >= k.end for k in kept):
            kept.append(m)
            if len(kept) >= limit:
                break
    kept.sort(key=lambda m: (m.start, m.end))
    return kept


class GuardEngine:
    """All configured local detectors over one text."""

    def __init__(self, settings: GuardSettings | None = None) -> None:
        self.settings = settings = settings or GuardSettings()
        self._custom = CustomRules(
            [(r.name, r.terms) for r in settings.blocklists],
            [(r.name, r.pattern) for r in settings.patterns],
        )
        self._personal = PersonalDetectors(settings.phone_regions)

    def scan(self, text: str) -> list[Match]:
        """Every value found in ``text``, in text order (never the value itself)."""
        cap = self.settings.max_text_chars
        tail = None
        if len(text) > cap:
            tail = Match("secret", UNSCANNED, "size_cap", cap, len(text))
            text = text[:cap]
        prepared = prepare(text)
        body = prepared.text
        found: list[tuple[tuple[int, int], Match]] = []
        for priority, m in secret_matches(body):
            found.append(((0, priority), m))
        if self._custom:
            for m in self._custom.matches(body, self.settings.max_matches):
                found.append(((1, 0), m))
        for m in self._personal.matches(body):
            found.append(((2, 0), m))
        matches = _resolve(found, self.settings.max_matches)
        if prepared.index is not None:
            matches = [
                Match(m.family, m.category, m.detector, *prepared.span(m.start, m.end))
                for m in matches
            ]
        if tail is not None:
            matches.append(tail)
        return matches

    def scan_slots(self, slots: Sequence[Slot]) -> list[tuple[Slot, Match]]:
        """The matches of every slot of one request, reading at most ``max_request_chars``.

        Slots are scanned in batches of up to ``_BATCH`` characters (many tiny parts cost
        one scan, not one each): consecutive parts of one message's content are joined with
        nothing between them (the model reads them as one text, so a value split across
        parts is found), other slots with a line break. A match is reported on each slot it
        covers, clipped to that slot's text."""
        budget = self.settings.max_request_chars
        out: list[tuple[Slot, Match]] = []
        batch: list[tuple[Slot, int]] = []
        parts: list[str] = []
        size = 0
        previous: Slot | None = None
        for slot in slots:
            if budget <= 0:
                out.append((slot, Match("secret", UNSCANNED, "request_cap", 0, len(slot.text))))
                continue
            budget -= len(slot.text)
            if size and size + len(slot.text) > min(_BATCH, self.settings.max_text_chars):
                self._scan_batch("".join(parts), batch, out)
                batch, parts, size, previous = [], [], 0, None
            if previous is not None and not _same_content(previous, slot):
                parts.append("\n")
                size += 1
            batch.append((slot, size))
            parts.append(slot.text)
            size += len(slot.text)
            previous = slot
        if batch:
            self._scan_batch("".join(parts), batch, out)
        return out

    def _scan_batch(
        self, text: str, batch: list[tuple[Slot, int]], out: list[tuple[Slot, Match]]
    ) -> None:
        matches = self.scan(text)
        if not matches:
            return
        starts = [offset for _, offset in batch]
        for m in matches:
            i = max(bisect.bisect_right(starts, m.start) - 1, 0)
            while i < len(batch):
                slot, offset = batch[i]
                lo, hi = max(m.start, offset), min(m.end, offset + len(slot.text))
                if offset >= m.end:
                    break
                if lo < hi or (m.start == m.end == lo):
                    out.append((slot, Match(m.family, m.category, m.detector, lo - offset,
                                            hi - offset)))  # fmt: skip
                i += 1


def _content_list(path: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    """The path of the content list a text part belongs to, else ``None``."""
    if len(path) >= 3 and path[-1] in ("text", "refusal") and isinstance(path[-2], int):
        parent = path[:-2]
    elif len(path) >= 2 and isinstance(path[-1], int):
        parent = path[:-1]
    else:
        return None
    return parent if parent[-1] in ("content", "output") else None


def _same_content(a: Slot, b: Slot) -> bool:
    """True for consecutive text parts of one message's content list."""
    parent = _content_list(a.path)
    return parent is not None and parent == _content_list(b.path)
