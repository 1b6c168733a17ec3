"""Byte-class masks: find character runs with ``bytes.translate`` and ``bytes.find`` (C speed).

A regex such as ``[0-9a-f]{32}`` restarts at every position of ordinary text; Python's engine
makes that the slowest part of a scan. Instead each text is translated once into a mask of
class letters, and runs are found by searching the mask for a literal run of that letter.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from functools import lru_cache

__all__ = [
    "MAX_B64",
    "MIN_B64",
    "base64_runs",
    "comma_candidates",
    "fragment_follows",
    "glue_candidates",
    "hex32_runs",
    "text_base64_runs",
    "to_bytes",
]


def _table(classes: dict[bytes, bytes]) -> bytes:
    table = bytearray(b" " * 256)
    for chars, letter in classes.items():
        for c in chars:
            table[c] = letter[0]
    return bytes(table)


_ALNUM = (string.ascii_letters + string.digits).encode()
_HEX_TABLE = _table({_ALNUM: b"x", b"0123456789abcdef": b"h"})
_B64_TABLE = _table({_ALNUM + b"+/_-": b"b", b"=": b"e"})
_SECRET_TABLE = _table({_ALNUM + b"+/=_~.-": b"s", b"\"'`": b"q"})
# For finding glue: fragment characters, quotes, and what may stand between two literals.
# "+" and "=" are both: base64 text ends in them, and they join literals (+, +=).
_GLUE_TABLE = _table(
    {
        _ALNUM + b"/_~-": b"s",
        b"+=": b"p",
        b"\"'`": b"q",
        b" \t\r\n&|();\\@$": b"g",
        b".": b"d",  # glue (PHP, Lua) or inside a fragment (an Entra secret: `Ntl8Q~OiF.HJO1Ly.i`)
        b",": b"c",
    }
)
_GLUE_AFTER = rb"(?:[gpd]{1,80}|[gpd]{1,40}s{1,40}[gpd]{1,12})q"
# Three searches, each with a literal prefix the regex engine finds at C speed: fragments
# that end in four plain characters (the common case), those with a + or = in their last four,
# and those with a dot in their last four (but not last).
_GLUE_MASK = re.compile(rb"ssssq" + _GLUE_AFTER)  # no group: it would cut the prefix short
_GLUE_MASK_P = re.compile(rb"p[sp]{0,3}q" + _GLUE_AFTER)
_GLUE_MASK_D = re.compile(rb"d[sd]{0,2}sq" + _GLUE_AFTER)
_COMMA_MASK = re.compile(rb"[spd]{4}q[gpd]{0,4}c[gpd]{0,12}q")
_B64_TAIL = re.compile(rb"b+e{0,2}")
_H32 = b"h" * 32


def to_bytes(text: str) -> bytes:
    """``text`` as bytes, one byte per character (non-latin-1 characters become ``?``)."""
    return text.encode("latin-1", "replace")


def hex32_runs(data: bytes) -> Iterator[int]:
    """Start offsets of standalone runs of exactly 32 lowercase hex digits."""
    mask = data.translate(_HEX_TABLE)
    n = len(mask)
    pos = mask.find(_H32)
    while pos != -1:
        end = pos + 32
        while end < n and mask[end] == 104:  # "h"
            end += 1
        alone = (pos == 0 or mask[pos - 1] != 120) and (end == n or mask[end] != 120)
        if end - pos == 32 and alone:  # 120 is "x": another letter or digit
            yield pos
        pos = mask.find(_H32, end)


def base64_runs(data: bytes, min_len: int, max_len: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of standalone base64/base64url runs (with up to two ``=``)."""
    mask = data.translate(_B64_TABLE)
    needle = b"b" * min_len
    pos = mask.find(needle)
    while pos != -1:
        m = _B64_TAIL.match(mask, pos)
        end = m.end() if m else pos + min_len
        if (end == len(mask) or mask[end] not in b"be") and end - pos <= max_len:
            yield pos, end
        while end < len(mask) and mask[end] in b"be":
            end += 1
        pos = mask.find(needle, end)


MIN_B64 = 40  # base64 of the shortest secret we look for (a 32-hex key) is 44 characters
MAX_B64 = 256 * 1024  # longer blobs are data (images, archives), not an encoded credential


@lru_cache(maxsize=4)
def text_base64_runs(text: str) -> tuple[tuple[int, int], ...]:
    """``base64_runs`` of ``MIN_B64``-``MAX_B64`` characters in a text, remembered for the few
    texts being scanned: the decoders and the named-key detector both need them, and the
    translation is the costly part."""
    return tuple(base64_runs(to_bytes(text), MIN_B64, MAX_B64))


def glue_candidates(data: bytes, start: int = 0, end: int | None = None) -> Iterator[int]:
    """Offsets of closing quotes after 4+ fragment characters, followed by glue and a quote."""
    mask = data.translate(_GLUE_TABLE)
    stop = len(mask) if end is None else end
    quotes = {m.start() + 4 for m in _GLUE_MASK.finditer(mask, start, stop)}
    for m in _GLUE_MASK_P.finditer(mask, start, stop):
        quote = mask.index(b"q", m.start())
        if quote - 4 >= start and mask[quote - 4 : quote].strip(b"sp") == b"":
            quotes.add(quote)
    for m in _GLUE_MASK_D.finditer(mask, start, stop):
        quote = mask.index(b"q", m.start())
        if quote - 4 >= start and mask[quote - 4 : quote].strip(b"sd") == b"":
            quotes.add(quote)
    yield from sorted(quotes)


def comma_candidates(data: bytes, start: int, end: int) -> Iterator[int]:
    """Like ``glue_candidates`` for a comma separator, within ``[start, end)``."""
    mask = data[start:end].translate(_GLUE_TABLE)
    for m in _COMMA_MASK.finditer(mask):
        yield start + m.start() + 4


def fragment_follows(data: bytes, pos: int, side: int = 4) -> bool:
    """True when ``side`` secret-alphabet characters start at ``pos``."""
    chunk = data[pos : pos + side].translate(_SECRET_TABLE)
    return chunk == b"s" * side
