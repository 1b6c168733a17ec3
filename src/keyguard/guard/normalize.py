"""The text the detectors read: lone surrogates replaced, invisible characters removed,
full-width ASCII folded, with a map back to the caller's offsets.

A value can be hidden from a pattern by characters a reader does not see (zero-width space,
joiners, soft hyphen, bidi controls, BOM) or written in full-width forms (``ｓｋ-...``). Those
are removed or folded before detection; a match is mapped back to the span of the original
text that holds it, invisible characters included, so a redaction removes all of it. Lone
surrogates (possible in JSON ``\\ud800`` escapes) become U+FFFD: the text stays one code point
per character, and every detector can encode it. Homoglyphs of other scripts (Cyrillic ``а``
for Latin ``a``) are not folded: a value so altered is no longer the credential.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Prepared", "prepare"]

_INVISIBLE = (
    "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\ufeff"
)
_ODD = re.compile("[\ud800-\udfff" + _INVISIBLE + "\uff01-\uff5e\u3000]")
_FOLD = {0xFF01 + i: 0x21 + i for i in range(0x5E)} | {0x3000: 0x20}
_SURROGATE = re.compile("[\ud800-\udfff]")
_DROP = re.compile("[" + _INVISIBLE + "]")


@dataclass(frozen=True, slots=True)
class Prepared:
    """``text`` to scan; ``index[i]`` is the original offset of its character ``i`` (``None``
    when offsets are unchanged)."""

    text: str
    index: list[int] | None = None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of ``[start, end)`` of the prepared text."""
        if self.index is None:
            return start, end
        if end <= start:
            return self.index[start] if start < len(self.index) else start, start
        return self.index[start], self.index[end - 1] + 1


def prepare(text: str) -> Prepared:
    if text.isascii() or _ODD.search(text) is None:
        return Prepared(text)
    text = _SURROGATE.sub("\ufffd", text).translate(_FOLD)
    if _DROP.search(text) is None:
        return Prepared(text)
    kept = [i for i, c in enumerate(text) if c not in _INVISIBLE]
    return Prepared(_DROP.sub("", text), kept)
