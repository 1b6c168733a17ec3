"""Where personal-data candidates can be: found at C speed, so clean text costs little.

The text is translated once into a byte mask of character classes (digit ``d``, ``.`` ``p``,
number separators ``s``, upper-case letter ``u``, lower-case ``l``, anything else ``x``) and
searched with ``bytes.find`` for literal class sequences: ``dd`` and ``dpd`` start runs of
digits and separators; a run with at least six digits (cards, IBANs, SSNs, national ids, phone
numbers) or three dots and four digits (IPv4) gives a window of the text around it, where the
validating patterns then run; so does an IBAN's head (two upper-case letters, two digits and
twelve letters or digits), whose account part may have letters in every group. ``uuuuuudd``
(or ``lllllldd``, as some type it) marks where an Italian fiscal code can start.
"""

from __future__ import annotations

import re
import string

__all__ = ["Windows", "find_windows"]

_TABLE = bytearray(b"x" * 256)
for _c in string.digits.encode():
    _TABLE[_c] = ord("d")
for _c in b" \t-/()+":
    _TABLE[_c] = ord("s")
for _c in string.ascii_uppercase.encode():
    _TABLE[_c] = ord("u")
for _c in string.ascii_lowercase.encode():
    _TABLE[_c] = ord("l")
_TABLE[ord(".")] = ord("p")
_MASK = bytes(_TABLE)
_RUN = re.compile(rb"[dps]*")
# a run with six digits, or four and three dots, may qualify (unambiguous: linear on any mask)
_SIX = re.compile(rb"d[ps]*d[ps]*d[ps]*d[ps]*d[ps]*d")
_FOUR = re.compile(rb"d[ps]*d[ps]*d[ps]*d")
_DOTS = re.compile(rb"p[ds]*p[ds]*p")
_IBAN_HEAD = re.compile(rb"uudd(?:s?[ud]){12,30}")
_BEFORE = 48  # context and IBAN head before a run
_AFTER = 40  # IBAN groups with letters after a run

Windows = list[tuple[int, int]]


def _runs(mask: bytes) -> list[tuple[int, int, int]]:
    """``(start, end, digits)`` of digit runs that may hold a candidate."""
    out: list[tuple[int, int, int]] = []
    n = len(mask)
    if _SIX.search(mask) is None and (_FOUR.search(mask) is None or _DOTS.search(mask) is None):
        return out  # no run can qualify
    pos = 0
    a, b = mask.find(b"dd"), mask.find(b"dpd")  # the next of each, searched again once passed
    while True:
        if 0 <= a < pos:
            a = mask.find(b"dd", pos)
        if 0 <= b < pos:
            b = mask.find(b"dpd", pos)
        hit = a if b == -1 else b if a == -1 else min(a, b)
        if hit == -1:
            return out
        start = hit
        while start > 0 and mask[start - 1] in b"dps" and hit - start < 64:
            start -= 1
        m = _RUN.match(mask, hit)
        end = m.end() if m else hit + 2
        digits = mask.count(b"d", start, end)
        if digits >= 6 or (digits >= 4 and mask.count(b"p", start, end) >= 3):
            out.append((start, end, digits))
        pos = max(end, hit + 1)
        if pos >= n:
            return out


def _iban_heads(mask: bytes) -> list[tuple[int, int]]:
    """Spans of a country code, two check digits and 12 or more letters and digits (one
    separator between two at most): an IBAN whose account part has letters and fewer than
    six digits in a row (``MT31 MALT RDWZ ...``, ``RO09 BCYP 0000 ...``) opens no digit run."""
    out: list[tuple[int, int]] = []
    pos = mask.find(b"uudd")
    while pos != -1:
        m = _IBAN_HEAD.match(mask, pos)
        if m is not None and (pos == 0 or mask[pos - 1] not in b"uld"):
            out.append((pos, m.end()))
            pos = mask.find(b"uudd", m.end())
        else:
            pos = mask.find(b"uudd", pos + 1)
    return out


def _merged(windows: Windows) -> Windows:
    """The windows (in any order) sorted and merged where they overlap or touch."""
    if len(windows) < 2:
        return windows
    windows.sort()
    out = [windows[0]]
    for lo, hi in windows[1:]:
        if lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def find_windows(text: str) -> tuple[Windows, list[int]]:
    """Windows ``(lo, hi)`` of ``text`` around numeric candidates, merged; and the offsets
    where an upper-case code with two digits (``RSSMRA85``) starts."""
    mask = text.encode("latin-1", "replace").translate(_MASK)
    spans = [(start, end) for start, end, _ in _runs(mask)] + _iban_heads(mask)
    windows = _merged([(max(0, lo - _BEFORE), min(len(text), hi + _AFTER)) for lo, hi in spans])
    codes: list[int] = []
    for head in (b"uuuuuudd", b"lllllldd"):
        pos = mask.find(head)
        while pos != -1:
            codes.append(pos)
            pos = mask.find(head, pos + 1)
    return windows, codes
