"""Operators' rules: named blocklists (whole-word, case-insensitive) and named patterns.

Patterns run on RE2 (``google-re2``): matching is linear in the text whatever the pattern,
so a hostile or careless pattern cannot stall the gateway; RE2 refuses what it cannot run in
linear time (backreferences, look-around), and a pattern whose compiled program exceeds
``_MAX_MEM`` is refused when the configuration is loaded. A pattern that matches the empty
string is refused too (it would match everywhere).

Blocklists are read in one pass over the text's words (``\\w+``): a term is keyed by its
case-folded first word, so each word of the text costs one dictionary look-up whatever the
number of terms; a hit is confirmed by comparing the case-folded text that follows (runs of
white space count as one space).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import re2

from keyguard.guard.findings import Match

__all__ = ["CustomRules", "compile_pattern"]

_MAX_MEM = 8 << 20  # bytes of RE2 program and DFA per pattern
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
_MAX_SPACE = 64  # white space between two words of a term


def _key(term: str) -> str:
    return _SPACE.sub(" ", term.strip()).casefold()


def _term_end(text: str, start: int, key: str) -> int | None:
    """The end of ``key`` when the text at ``start`` is that term, whole-word, else ``None``."""
    i, n, pos = start, len(text), 0
    while pos < len(key):
        if i >= n:
            return None
        if key[pos] == " ":
            run = i
            while i < n and text[i].isspace() and i - run < _MAX_SPACE:
                i += 1
            if i == run or i - run >= _MAX_SPACE:
                return None
            pos += 1
            continue
        folded = text[i].casefold()
        if not key.startswith(folded, pos):
            return None
        pos += len(folded)
        i += 1
    if i < n and (text[i].isalnum() or text[i] == "_"):
        return None
    return i


def compile_pattern(pattern: str) -> Any:
    """The compiled RE2 pattern; ``ValueError`` naming the problem when it cannot be used."""
    options = re2.Options()
    options.max_mem = _MAX_MEM
    options.log_errors = False
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(
            f"pattern {pattern[:60]!r} is not valid RE2 syntax ({detail}); backreferences "
            "and look-around are not supported"
        ) from None
    if compiled.search("") is not None:
        raise ValueError(f"pattern {pattern[:60]!r} matches the empty string: make it specific")
    return compiled


class CustomRules:
    """``(name, terms)`` blocklists and ``(name, pattern)`` patterns, compiled once."""

    def __init__(
        self,
        blocklists: Sequence[tuple[str, Sequence[str]]] = (),
        patterns: Sequence[tuple[str, str]] = (),
    ) -> None:
        # first word (case-folded) -> [(whole term key, rule name)], longest term first
        self._terms: dict[str, list[tuple[str, str]]] = {}
        for name, terms in blocklists:
            for term in terms:
                key = _key(term)
                first = _WORD.search(key)
                if first is None:
                    continue
                self._terms.setdefault(first.group(), []).append((key, name))
        for entries in self._terms.values():
            entries.sort(key=lambda e: len(e[0]), reverse=True)
        self._patterns = [(name, compile_pattern(p)) for name, p in patterns]

    def __bool__(self) -> bool:
        return bool(self._terms or self._patterns)

    def _blocklisted(self, text: str, limit: int) -> Iterator[Match]:
        found = 0
        skip_to = 0
        for m in _WORD.finditer(text):
            if m.start() < skip_to:
                continue
            entries = self._terms.get(m.group().casefold())
            if entries is None:
                continue
            for key, name in entries:
                end = _term_end(text, m.start(), key)
                if end is not None:
                    yield Match("custom", name, f"blocklist:{name}", m.start(), end)
                    found += 1
                    skip_to = end
                    break
            if found >= limit:
                return

    def matches(self, text: str, limit: int) -> Iterator[Match]:
        if self._terms:
            yield from self._blocklisted(text, limit)
        for name, compiled in self._patterns:
            for n, m in enumerate(compiled.finditer(text)):
                if n >= limit:
                    break
                if m.end() > m.start():
                    yield Match("custom", name, f"pattern:{name}", m.start(), m.end())
