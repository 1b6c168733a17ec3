"""Rejoin string literals split by concatenation, on one line or across consecutive lines.

Handles ``"a" + "b"``, implicit ``"a" "b"`` (Python, C), line continuations, parenthesised
literals on consecutive lines, ``s += "b"`` on the next line, PHP ``.``, Lua ``..``, VB ``&``,
SQL ``||`` and, next to a ``join(``/``concat(`` call, comma-separated literals
(``["a", "b"].join("")``, ``concat('a', 'b')`` in ARM/Bicep/Terraform). The glue between two
literals (closing quote, operators, whitespace, opening quote) is removed in a window around
it; detectors then run on the window and keep only hits that span a join.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from keyguard.scan.lines import line_end, line_start
from keyguard.scan.masks import comma_candidates, fragment_follows, glue_candidates, to_bytes
from keyguard.scan.views import View

__all__ = ["concatenation_views"]

_OPEN = r"""(?:[@$]|[rRbBuUfF]{1,2})?["'`]"""
_GLUE = re.compile(
    r"""["'`](?:[ \t]*(?:\\[ \t]*\r?\n|\r?\n[ \t]*(?:[A-Za-z_$][\w$.]*[ \t]*\+=)?|;|\+=?|"""
    r"""\.\.?|&|\|\||[()]))+[ \t]*""" + _OPEN + r"""|["'][ \t]+""" + _OPEN
)
_COMMA_GLUE = re.compile(r"""["'`][ \t]*,[ \t]*(?:\r?\n[ \t]*)?""" + _OPEN)
_JOIN_CALLS = ("join(", "Join(", "concat(", "Concat(", "CONCAT(")
_MARGIN = 160
_CLUSTER_GAP = 240


def _join_calls(text: str) -> list[int]:
    found = []
    for needle in _JOIN_CALLS:
        pos = text.find(needle)
        while pos != -1:
            found.append(pos)
            pos = text.find(needle, pos + 1)
    return found


def _glue_spans(text: str) -> list[tuple[int, int]]:
    """Glue between two secret-looking fragments (4+ secret-alphabet characters each side)."""
    data = to_bytes(text)
    spans: list[tuple[int, int]] = []
    for quote in glue_candidates(data):
        m = _GLUE.match(text, quote)
        if m is not None and fragment_follows(data, m.end()):
            spans.append((m.start(), m.end()))
    for call in _join_calls(text):
        lo, hi = max(0, call - 300), call + 300
        for quote in comma_candidates(data, lo, hi):
            m = _COMMA_GLUE.match(text, quote)
            if m is not None and fragment_follows(data, m.end()):
                spans.append((m.start(), m.end()))
    spans = sorted(set(spans))
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged and s < merged[-1][1]:
            continue
        merged.append((s, e))
    return merged


def concatenation_views(view: View) -> Iterator[View]:
    """Windows of ``view`` with the glue between adjacent literals removed."""
    text = view.text
    if '"' not in text and "'" not in text and "`" not in text:
        return
    spans = _glue_spans(text)
    i = 0
    while i < len(spans):
        j = i
        while j + 1 < len(spans) and spans[j + 1][0] - spans[j][1] <= _CLUSTER_GAP:
            j += 1
        # the cluster, a margin, and the rest of its line (within reach: lines.py)
        lo, _ = line_start(text, max(0, spans[i][0] - _MARGIN))
        hi = line_end(text, min(len(text), spans[j][1] + _MARGIN))
        parts: list[str] = []
        anchors: list[tuple[int, int]] = [(0, lo)]
        joins: list[int] = []
        pos, out = lo, 0
        for s, e in spans[i : j + 1]:
            parts.append(text[pos:s])
            out += s - pos
            joins.append(out)
            anchors.append((out, e))
            pos = e
        parts.append(text[pos:hi])
        yield View(
            "".join(parts),
            view.child_encoding("concatenation"),
            parent=view,
            anchors=anchors,
            joins=joins,
        )
        i = j + 1
