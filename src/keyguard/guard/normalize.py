"""The text the detectors read: lone surrogates replaced, invisible characters removed,
full-width ASCII, no-break spaces and every script's decimal digits folded, with a map back to
the caller's offsets.

A value can be hidden from a pattern by characters a reader does not see (zero-width space,
joiners, soft hyphen, bidi controls, BOM), written in full-width forms (``ｓｋ-...``) or
grouped with no-break or thin spaces. Those are removed or folded before detection, and so
are the decimal digits of other scripts (``+٤٤ ٧٩١١ ١٢٣٤٥٦`` is the phone number
``+44 7911 123456``; a card number, IBAN or identifier written so is still one); a match is
mapped back to the span of the original text that holds it, invisible characters included,
so a redaction removes all of it. Lone surrogates (possible in JSON ``\\ud800`` escapes)
become U+FFFD: the text stays one code point per character, and every detector can encode
it. Homoglyphs of other scripts (Cyrillic ``а`` for Latin ``a``) are not folded: a value so
altered is no longer the credential.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DIGITS", "Prepared", "prepare"]

_INVISIBLE = (
    "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\ufeff"
)
# The zero of each run of ten decimal digits (Unicode category Nd, always in runs of ten from
# zero to nine) of every script but ASCII, Unicode 14 (tests/guard/test_normalize.py holds it to
# the interpreter's own table); each digit is folded to its ASCII digit.
_ZEROS = (
    0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6,
    0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50,
    0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50,
    0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
)  # fmt: skip
DIGITS = {zero + i: 0x30 + i for zero in _ZEROS for i in range(10)}
# No-break and fixed-width spaces that group digits (``4539 1488 ...`` pasted from a web page,
# French ``06 12 34 56 78`` with U+202F): read as the ASCII space they stand for.
_SPACES = "\u00a0\u2007\u2009\u202f"
_ODD = re.compile("[\ud800-\udfff" + _INVISIBLE + _SPACES + "\uff01-\uff5e\u3000]|(?![0-9])\\d")
_FOLD = {0xFF01 + i: 0x21 + i for i in range(0x5E)} | {0x3000: 0x20} | DIGITS
_FOLD |= dict.fromkeys(map(ord, _SPACES), 0x20)
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
