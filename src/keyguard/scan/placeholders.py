"""Placeholders and documentation examples: values shaped like a secret that are not one.

Applied to the random part of a candidate (fixed signature fields are excluded by the
caller): words such as ``your`` or ``example``, runs of one character, ascending sequences,
short repeating units, too few distinct characters, and well-known published sample values
(kept here only as SHA-256 digests).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter

__all__ = ["WELL_KNOWN_SAMPLE_DIGESTS", "is_placeholder", "is_well_known_sample", "entropy"]

_WORDS = re.compile(
    r"(?i)example|sample|placeholder|your|dummy|fake|xxxx|changeme|redacted|replace|insert|"
    r"secret[-_]?here|key[-_]?here|token[-_]?here|todo|foobar|lorem"
)
# A word only counts when it stands apart (``your-key``, ``<YOUR_KEY>``) or the value has no
# digit at all (``yourkeyhere``): random base62 text contains such words by chance (a
# checksum-valid key containing ``tODO`` must still be reported).
_DELIMITED_WORD = re.compile(
    r"(?<![A-Za-z0-9])(?:" + _WORDS.pattern[4:] + r")(?![A-Za-z0-9])", re.I
)
_SEQUENCES = (
    "0123456789abcdefghijklmnopqrstuvwxyz",
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "abcdefghijklmnopqrstuvwxyz",
    "zyxwvutsrqponmlkjihgfedcba9876543210",
    "qwertyuiopasdfghjklzxcvbnm",
)

# SHA-256 of values published in documentation and tools as samples (never real credentials):
# the Azure Storage emulator (Azurite) well-known account key, the jwt.io example token and
# the Azure Cosmos DB emulator's well-known key.
WELL_KNOWN_SAMPLE_DIGESTS = frozenset(
    {
        "aa6547439583c3a275d4542a0df6c1ad6a863971be9f2a2220f027cc02aef615",
        "0011cc25eb4320717494d2703e8cba85743e71b500283c21c8b88147992f9059",
        "7f75367e7881255134e1375e723d1dea8ad5f6a4fdb79d938df1f1754a830606",
    }
)


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    if not value:
        return 0.0
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def is_well_known_sample(value: str) -> bool:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest() in (
        WELL_KNOWN_SAMPLE_DIGESTS
    )


_SEQUENCE_LENGTH = 8
_SEQUENCE_GRAMS = frozenset(
    seq[i : i + _SEQUENCE_LENGTH]
    for seq in _SEQUENCES
    for i in range(len(seq) - _SEQUENCE_LENGTH + 1)
)


def _has_sequence(value: str) -> bool:
    """True when ``value`` holds 8 consecutive characters of a sequence (``01234567``)."""
    n = _SEQUENCE_LENGTH
    return any(value[i : i + n] in _SEQUENCE_GRAMS for i in range(len(value) - n + 1))


def _longest_run(value: str) -> int:
    best = run = 0
    prev = ""
    for c in value:
        run = run + 1 if c == prev else 1
        prev = c
        best = max(best, run)
    return best


def _is_periodic(value: str, max_unit: int = 8) -> bool:
    for unit in range(1, max_unit + 1):
        if (
            len(value) >= 2 * unit
            and value == (value[:unit] * (len(value) // unit + 1))[: len(value)]
        ):
            return True
    return False


def is_placeholder(random_part: str, full: str | None = None) -> bool:
    """True when ``random_part`` (the variable part of a candidate) is not a real secret.

    ``full`` (the whole candidate) is checked against the well-known sample list.
    """
    if full is not None and is_well_known_sample(full):
        return True
    if is_well_known_sample(random_part):
        return True
    if len(random_part) < 8:
        return False
    has_digit = any(c.isdigit() for c in random_part)
    if (_DELIMITED_WORD if has_digit else _WORDS).search(random_part):
        return True
    if _longest_run(random_part) >= 6:
        return True
    if _is_periodic(random_part):
        return True
    if _has_sequence(random_part):
        return True
    distinct = len(set(random_part))
    return distinct < min(8, len(random_part) // 4)
