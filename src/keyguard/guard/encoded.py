"""Personal data written percent-encoded: a URL's query or a form body
(``?email=anna.berger%40contoso.com``, ``phone=%2B49+151+23456789``, ``iban=DE89%203704...``).

Each run of URL characters that holds an escaped ``@``, ``+``, space or ``:`` is decoded on
its own (``+`` is a space, as in a form body; an escape is one character), read by the
personal-data detectors, and a match is mapped back to the encoded characters it came from,
so a redaction removes the encoded value. Work is bounded: a run is followed at most
:data:`REACH` characters either way from an escape (a run of escapes goes on as long as they
do: a value is never cut between two escapes), and each character of the text is in at most
two runs (one ended by :data:`REACH` is read again by the next, at most :data:`REACH` back).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from keyguard.guard import gate
from keyguard.guard.findings import Match
from keyguard.guard.personal import PersonalDetectors

__all__ = ["REACH", "percent_encoded_matches"]

REACH = 256  # characters a run is followed either way from an escape
_PCT = re.compile(r"%[0-9A-Fa-f]{2}")
# URL characters and escapes, ending REACH characters after the last escape (possessive: a
# stretch with no escape is read once)
_RUN = re.compile(rf"(?:[\w.~+-]{{0,{REACH}}}+%[0-9A-Fa-f]{{2}})*+[\w.~+-]{{0,{REACH}}}+")
# What an encoder escapes in personal data (``@``, ``+``, a space, ``:``): a run without one
# reads as written (``%2F``-separated paths, encoded letters)
_USEFUL = re.compile(r"%(?:40|2[0Bb]|3[Aa])")
_URL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.~+-")
_PERSONAL = gate.NUMBERS | gate.EMAIL | gate.IPV6


def _runs(text: str) -> Iterator[tuple[int, int]]:
    """Runs of URL characters and escapes that hold at least one escape; a run overlaps the
    one before only where that one ended at its reach."""
    done = floor = 0
    for m in _PCT.finditer(text):
        if m.start() < done:
            continue
        lo = m.start()
        stop = max(floor, lo - REACH)
        while lo > stop and text[lo - 1] in _URL_CHARS:
            lo -= 1
        run = _RUN.match(text, m.start())
        hi = run.end() if run is not None else m.end()
        done, floor = hi, m.start()
        if _USEFUL.search(text, lo, hi):
            yield lo, hi


def _decode(text: str, lo: int, hi: int) -> tuple[str, list[int], list[int]]:
    """``text[lo:hi]`` decoded, and the original start and end of each decoded character."""
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = lo
    for m in _PCT.finditer(text, lo, hi):
        chars.append(text[pos : m.start()].replace("+", " "))
        starts.extend(range(pos, m.start()))
        ends.extend(range(pos + 1, m.start() + 1))
        chars.append(chr(int(text[m.start() + 1 : m.end()], 16)))
        starts.append(m.start())
        ends.append(m.end())
        pos = m.end()
    chars.append(text[pos:hi].replace("+", " "))
    starts.extend(range(pos, hi))
    ends.extend(range(pos + 1, hi + 1))
    return "".join(chars), starts, ends


def percent_encoded_matches(text: str, personal: PersonalDetectors) -> Iterator[Match]:
    """The personal data in the percent-encoded runs of ``text``, over their encoded span."""
    if "%" not in text:
        return
    for lo, hi in _runs(text):
        decoded, starts, ends = _decode(text, lo, hi)
        found = gate.gates(decoded) & _PERSONAL
        if not found:
            continue
        for m in personal.matches(decoded, found):
            if m.end <= m.start:
                continue
            start, end = starts[m.start], ends[m.end - 1]
            if "%" in text[start:end]:  # read as written, the plain scan found it (or not)
                yield Match(m.family, m.category, f"{m.detector}/url", start, end)
