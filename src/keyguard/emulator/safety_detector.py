"""The emulator's Azure AI Content Safety "model": a deterministic detector (pure functions).

Not a classifier: fixed rules tests can aim at.

* **Prompt Shields.** A text is an attack when it contains one of :data:`ATTACK_PHRASES`
  (case-folded substring): the user prompt's ``attackDetected`` (a jailbreak), each
  document's (an indirect attack).
* **Harm categories.** The marker word ``emu-<category>-<n>`` (``category`` one of ``hate``,
  ``selfharm``, ``sexual``, ``violence``; ``n`` 0..7) gives the category severity ``n``; the
  highest marker of a category wins; no marker is 0. With ``FourSeverityLevels`` (Azure's
  default) a severity is rounded down to 0, 2, 4 or 6, as Azure reports.
* **Blocklists.** An item matches when it occurs in the text case-folded, on word boundaries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "ATTACK_PHRASES",
    "CATEGORIES",
    "BlocklistItem",
    "is_attack",
    "severities",
    "blocklist_matches",
]

ATTACK_PHRASES: tuple[str, ...] = (
    "ignore all previous instructions",
    "ignore previous instructions",
    "ignore your instructions",
    "disregard your rules",
    "you are now dan",
    "do anything now",
    "developer mode enabled",
    "[system annotation",
)
#: Azure's text categories, in the order Azure lists them
CATEGORIES: tuple[str, ...] = ("Hate", "SelfHarm", "Sexual", "Violence")
_MARKER = re.compile(r"\bemu-(hate|selfharm|sexual|violence)-([0-7])\b", re.IGNORECASE)
_BY_MARKER = {c.lower(): c for c in CATEGORIES}


@dataclass(frozen=True, slots=True)
class BlocklistItem:
    blocklist: str
    item_id: str
    text: str


def is_attack(text: str) -> bool:
    folded = text.casefold()
    return any(phrase in folded for phrase in ATTACK_PHRASES)


def severities(text: str, categories: Sequence[str], *, eight_levels: bool) -> dict[str, int]:
    """Each asked category's severity in ``text``."""
    found = dict.fromkeys(categories, 0)
    for match in _MARKER.finditer(text):
        category = _BY_MARKER[match.group(1).lower()]
        if category in found:
            found[category] = max(found[category], int(match.group(2)))
    if not eight_levels:
        found = {c: s - s % 2 for c, s in found.items()}
    return found


def blocklist_matches(
    text: str, names: Iterable[str], blocklists: Mapping[str, Sequence[BlocklistItem]]
) -> list[BlocklistItem]:
    """The items of the named blocklists found in ``text``, in the order of ``names``."""
    folded = text.casefold()
    hits = []
    for name in names:
        for item in blocklists.get(name, ()):
            pattern = r"(?<!\w)" + re.escape(item.text.casefold()) + r"(?!\w)"
            if re.search(pattern, folded):
                hits.append(item)
    return hits
