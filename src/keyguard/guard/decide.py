"""What the guardrails decide for the texts of one body (pure: no I/O, no clock).

:func:`judge` runs the engine over each text of a request or an answer, asks the actions in
force what to do with each match, and returns a :class:`Verdict`: every decision as a
:class:`Hit` (category, detector, action, a keyed fingerprint of the value, never the value),
the first match to ``block`` on, and the texts rewritten with typed placeholders for the
matches to ``redact`` (``[EMAIL_1]``: one number per distinct value and category, so the same
value is the same placeholder across the body). :class:`Placeholders` keeps, for the request,
which placeholder stands for which value, so the answer can have them put back
(``restore``) for the caller who sent them; it lives as long as the request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from keyguard.guard.findings import Match, Slot
from keyguard.policy.guardrails import Action, Effective

__all__ = [
    "Hit",
    "Placeholders",
    "Verdict",
    "Where",
    "judge",
    "restorations",
    "rewritten",
    "MAX_HITS",
    "PLACEHOLDER",
]

Where = Literal["request", "answer"]
#: decisions kept per body for the audit (the count of the rest is kept)
MAX_HITS = 32
_TAG = re.compile(r"[^A-Z0-9]+")


@dataclass(frozen=True, slots=True)
class Hit:
    """One guardrail decision: what was found, where, and what was done. ``fingerprint`` is a
    keyed digest of the value (the vault's fingerprint key), never the value."""

    family: str
    category: str
    detector: str
    action: Action
    where: Where
    role: str  # the slot's role: user, system, tool, input, completion, ...
    fingerprint: str

    def to_record(self) -> dict[str, str]:
        return {
            "family": self.family,
            "category": self.category,
            "detector": self.detector,
            "action": self.action,
            "where": self.where,
            "role": self.role,
            "fingerprint": self.fingerprint,
        }


class Placeholders:
    """Typed placeholders for one request: value -> ``[CATEGORY_N]`` and back."""

    __slots__ = ("_by_value", "_counts", "values")

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        self.values: dict[str, str] = {}  # placeholder -> value (for restore)

    def for_value(self, category: str, value: str) -> str:
        key = (category, value)
        found = self._by_value.get(key)
        if found is None:
            tag = _TAG.sub("_", category.upper()).strip("_") or "VALUE"
            n = self._counts.get(tag, 0) + 1
            self._counts[tag] = n
            found = f"[{tag}_{n}]"
            self._by_value[key] = found
            self.values[found] = value
        return found

    def __len__(self) -> int:
        return len(self.values)


@dataclass(slots=True)
class Verdict:
    hits: list[Hit] = field(default_factory=list)
    more_hits: int = 0  # decisions beyond MAX_HITS (counted, not kept)
    blocked: Hit | None = None  # the first match whose action is block
    replacements: dict[tuple[str | int, ...], str] = field(default_factory=dict)
    alerts: list[Hit] = field(default_factory=list)
    placeholders: Placeholders | None = None  # the request's: value <-> placeholder

    def add(self, hit: Hit) -> None:
        if len(self.hits) < MAX_HITS:
            self.hits.append(hit)
        else:
            self.more_hits += 1


PLACEHOLDER = re.compile(r"\[[A-Z0-9_]{1,70}_[0-9]{1,6}\]")

Edit = tuple[int, int, str]  # start, end, the text that replaces it


def rewritten(text: str, edits: Sequence[Edit]) -> str:
    """``text`` with each edit applied (edits in text order; one overlapping an earlier edit
    is folded into it)."""
    out: list[str] = []
    pos = 0
    for start, end, new in edits:
        if start < pos:  # overlaps what is already replaced
            continue
        out.append(text[pos:start])
        out.append(new)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def restorations(text: str, values: Mapping[str, str]) -> list[Edit]:
    """Where ``text`` carries one of this request's placeholders, and its value."""
    if not values or "[" not in text:
        return []
    return [
        (m.start(), m.end(), values[m.group()])
        for m in PLACEHOLDER.finditer(text)
        if m.group() in values
    ]


def judge(
    slots: Sequence[Slot],
    scan_slots: Callable[[Sequence[Slot]], list[tuple[Slot, Match]]],
    actions: Effective,
    fingerprint: Callable[[str], str],
    where: Where,
    placeholders: Placeholders | None = None,
    restore: Mapping[str, str] | None = None,
) -> Verdict:
    """Every decision over ``slots`` (``scan_slots``: the engine's, which reads at most its
    caps and reports the rest as ``unscanned``); redactions use (and fill) ``placeholders``;
    with ``restore`` (an answer's), this request's placeholders in the texts get their values
    back (edits on the text as scanned, so a restored value is never judged again)."""
    verdict = Verdict(placeholders=placeholders if placeholders is not None else Placeholders())
    pairs = scan_slots(slots)
    if not pairs and not restore:  # nothing found, nothing to put back: most bodies
        return verdict
    found: dict[int, list[Match]] = {}
    for slot, match in pairs:
        found.setdefault(id(slot), []).append(match)
    for slot in slots:
        text = slot.text
        matches = found.get(id(slot), [])
        edits = (
            _decide(slot, text, matches, actions, fingerprint, where, verdict) if matches else []
        )
        if restore:
            edits.extend(restorations(text, restore))
            edits.sort()
        if edits:
            verdict.replacements[slot.path] = rewritten(text, edits)
    return verdict


def _decide(
    slot: Slot,
    text: str,
    matches: list[Match],
    actions: Effective,
    fingerprint: Callable[[str], str],
    where: Where,
    verdict: Verdict,
) -> list[Edit]:
    edits: list[Edit] = []
    for match in sorted(matches, key=lambda m: (m.start, -m.end)):
        action = actions.action(match.family, match.category)
        if action == "off":
            continue
        value = text[match.start : match.end]
        hit = Hit(
            match.family, match.category, match.detector, action, where, slot.role,
            fingerprint(value),
        )  # fmt: skip
        verdict.add(hit)
        if action == "block":
            if verdict.blocked is None:
                verdict.blocked = hit
        elif action == "redact":
            placeholders = verdict.placeholders
            assert placeholders is not None
            edits.append((match.start, match.end, placeholders.for_value(match.category, value)))
        elif action == "alert":
            verdict.alerts.append(hit)
    return edits
