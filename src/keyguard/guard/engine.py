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

from keyguard.guard import gate
from keyguard.guard.assigned import assigned_secrets
from keyguard.guard.custom import CustomRules
from keyguard.guard.encoded import percent_encoded_matches
from keyguard.guard.findings import Match, Slot
from keyguard.guard.normalize import prepare
from keyguard.guard.personal import PersonalDetectors
from keyguard.guard.secrets import secret_matches
from keyguard.guard.settings import GuardSettings
from keyguard.scan.detectors import keep_disjoint

__all__ = ["GuardEngine", "UNSCANNED"]

UNSCANNED = "unscanned"
_ASSIGNED_PRIORITY = 100  # a value known by its name only: any shaped kind wins
_BATCH = 64 * 1024  # characters of slots scanned in one pass
_PERSONAL = gate.NUMBERS | gate.EMAIL | gate.IPV6
_PART_KEYS = frozenset({"text", "refusal"})  # a content list's part's text (else never in one)
_FAMILY_RANK = {"secret": 0, "custom": 1, "personal": 2}


def _resolve(found: list[tuple[tuple[int, int], Match]], limit: int) -> list[Match]:
    """Non-overlapping matches: the best rank first, then the earliest, then the longest."""
    found.sort(key=lambda f: (f[0], f[1].start, f[1].start - f[1].end))
    return keep_disjoint((m for _, m in found), limit)


class GuardEngine:
    """All configured local detectors over one text."""

    def __init__(self, settings: GuardSettings | None = None) -> None:
        self.settings = settings = settings or GuardSettings()
        self._custom = CustomRules(
            [(r.name, r.terms) for r in settings.blocklists],
            [(r.name, r.pattern) for r in settings.patterns],
        )
        self._personal = PersonalDetectors(settings.phone_regions)
        # a request's texts this long in all are read in one scan (one batch, under both caps)
        self._one_scan = min(_BATCH, settings.max_text_chars, settings.max_request_chars)

    def scan(self, text: str) -> list[Match]:
        """Every value found in ``text``, in text order (never the value itself)."""
        cap = self.settings.max_text_chars
        tail = None
        if len(text) > cap:
            tail = Match("secret", UNSCANNED, "size_cap", cap, len(text))
            text = text[:cap]
        prepared = prepare(text)
        body = prepared.text
        gates = gate.gates(body)
        if not gates and not self._custom:  # no detector can find anything: most texts
            return [tail] if tail is not None else []
        found: list[tuple[tuple[int, int], Match]] = []
        if gates & gate.SECRET:
            for priority, m in secret_matches(body, gated=True):
                found.append(((0, priority), m))
        if gates & gate.ASSIGNED:
            for m in assigned_secrets(body):
                found.append(((0, _ASSIGNED_PRIORITY), m))
        if self._custom:
            for m in self._custom.matches(body, self.settings.max_matches):
                found.append(((1, 0), m))
        if gates & _PERSONAL:
            for m in self._personal.matches(body, gates):
                found.append(((2, 0), m))
        if gates & gate.SECRET and "%" in body:  # an escape opens the secret gate
            for m in percent_encoded_matches(body, self._personal):
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

        Slots are scanned in batches of up to ``_BATCH`` characters, a line break between
        two slots (many tiny parts cost one scan, not one each). The text parts of one
        message's content list are also scanned joined with nothing between them, as the
        model reads them, and the matches that span two parts are added: a value split
        across parts is found. A match is reported on each slot it covers, clipped to that
        slot's text."""
        texts = [slot.text for slot in slots]
        if sum(map(len, texts)) + len(texts) <= self._one_scan and _no_parts(slots):
            matches = self.scan("\n".join(texts))  # the usual body: one scan, nothing to batch
            if not matches:
                return []
            offsets: list[tuple[Slot, int]] = []
            at = 0
            for slot in slots:
                offsets.append((slot, at))
                at += len(slot.text) + 1
            found: list[tuple[Slot, Match]] = []
            self._place(offsets, matches, found, spanning=False)
            return found
        budget = self.settings.max_request_chars
        out: list[tuple[Slot, Match]] = []
        batch: list[tuple[Slot, int]] = []
        size = 0
        limit = min(_BATCH, self.settings.max_text_chars)
        group: list[Slot] = []
        group_parent: tuple[str | int, ...] | None = None
        for slot in slots:
            if budget <= 0:
                out.append((slot, Match("secret", UNSCANNED, "request_cap", 0, len(slot.text))))
                continue
            budget -= len(slot.text)
            if batch and size + len(slot.text) > limit:
                self._scan_batch(batch, "\n", out, spanning=False)
                batch, size = [], 0
            batch.append((slot, size))
            size += len(slot.text) + 1
            parent = _content_list(slot.path) if _maybe_part(slot.path) else None
            if group and (parent is None or parent != group_parent):
                self._scan_joined(group, out)
                group = []
            group.append(slot)
            group_parent = parent
        if batch:
            self._scan_batch(batch, "\n", out, spanning=False)
        self._scan_joined(group, out)
        return out

    def _scan_joined(self, group: list[Slot], out: list[tuple[Slot, Match]]) -> None:
        if len(group) < 2:
            return
        limit = min(_BATCH, self.settings.max_text_chars)
        batch: list[tuple[Slot, int]] = []
        size = 0
        for slot in group:
            if batch and size + len(slot.text) > limit:
                self._scan_batch(batch, "", out, spanning=True)
                last = batch[-1][0]  # the last part again: a value split across the cut
                batch, size = [(last, 0)], len(last.text)
            batch.append((slot, size))
            size += len(slot.text)
        self._scan_batch(batch, "", out, spanning=True)

    def _scan_batch(
        self,
        batch: list[tuple[Slot, int]],
        glue: str,
        out: list[tuple[Slot, Match]],
        spanning: bool,
    ) -> None:
        if len(batch) < 2 and spanning:
            return
        self._place(batch, self.scan(glue.join([slot.text for slot, _ in batch])), out, spanning)

    @staticmethod
    def _place(
        batch: list[tuple[Slot, int]],
        matches: list[Match],
        out: list[tuple[Slot, Match]],
        spanning: bool,
    ) -> None:
        """Each match of a batch's scan reported on the slots it covers."""
        starts = [offset for _, offset in batch]
        for m in matches:
            if spanning and m.category == UNSCANNED:
                continue
            i = max(bisect.bisect_right(starts, m.start) - 1, 0)
            pieces: list[tuple[Slot, Match]] = []
            while i < len(batch):
                slot, offset = batch[i]
                if offset >= m.end and m.end > m.start:
                    break
                lo, hi = max(m.start, offset), min(m.end, offset + len(slot.text))
                if lo < hi or (m.start == m.end == lo):
                    pieces.append(
                        (slot, Match(m.family, m.category, m.detector, lo - offset, hi - offset))
                    )
                i += 1
            if not spanning or len(pieces) > 1:
                out.extend(pieces)


def _maybe_part(path: tuple[str | int, ...]) -> bool:
    """Whether the text at ``path`` may be a part of a content list: it does not end in a
    name other than a part's ``text`` or ``refusal`` (the cheap test before
    :func:`_content_list`)."""
    last = path[-1] if path else None
    return type(last) is not str or last in _PART_KEYS


def _no_parts(slots: Sequence[Slot]) -> bool:
    """True when no slot can be a part of a content list."""
    for slot in slots:
        if _maybe_part(slot.path):
            return False
    return True


def _content_list(path: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    """The path of the content list a text part belongs to, else ``None``."""
    if len(path) >= 3 and path[-1] in _PART_KEYS and isinstance(path[-2], int):
        parent = path[:-2]
    elif len(path) >= 2 and isinstance(path[-1], int):
        parent = path[:-1]
    else:
        return None
    return parent if parent[-1] in ("content", "output") else None
