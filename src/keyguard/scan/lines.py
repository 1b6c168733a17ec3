"""A candidate's line, read within reach.

Every detector that judges a candidate by its line (the names before a value, the sentence it
stands in, a URL's sibling parameters, a concatenation's window) reads at most
:data:`LINE_REACH` characters of it either way: a hostile text of one long line full of
candidates would otherwise cost the line's length once per candidate.
"""

from __future__ import annotations

__all__ = ["LINE_REACH", "line_end", "line_start"]

#: how far a candidate's line is read, either way
LINE_REACH = 512


def line_start(text: str, at: int, reach: int = LINE_REACH) -> tuple[int, bool]:
    """Where the line holding ``at`` starts, looking back at most ``reach`` characters, and
    whether that is the line's real start (``False``: the line is longer, cut at ``reach``)."""
    lo = max(0, at - reach)
    found = text.rfind("\n", lo, at)
    if found != -1:
        return found + 1, True
    return lo, lo == 0


def line_end(text: str, at: int, reach: int = LINE_REACH) -> int:
    """Where the line holding ``at`` ends (its line break), looking ahead at most ``reach``
    characters."""
    hi = min(len(text), at + reach)
    found = text.find("\n", at, hi)
    return hi if found == -1 else found
