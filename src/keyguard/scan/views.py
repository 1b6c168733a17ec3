"""Text views: the file itself, or a decoded/rejoined form of part of it, mapped back to lines.

Detectors run on a ``View``'s ``text``. Every view knows how to map a span of its text back to
an offset span of its parent, down to the original file, where ``LineIndex`` turns offsets
into 1-based line numbers. Files are decoded as latin-1 so that offsets equal byte offsets.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field

__all__ = ["LineIndex", "View", "notebook_view"]


class LineIndex:
    """Offsets to 1-based line numbers for one text (built on first use)."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._starts: list[int] | None = None

    def line(self, offset: int) -> int:
        if self._starts is None:
            starts = [0]
            text = self._text
            pos = text.find("\n")
            while pos != -1:
                starts.append(pos + 1)
                pos = text.find("\n", pos + 1)
            self._starts = starts
        return bisect.bisect_right(self._starts, offset)


@dataclass(slots=True)
class View:
    """A text plus its mapping to the parent view.

    ``anchors`` are ``(view_offset, parent_offset)`` pairs, sorted; an offset maps through the
    last anchor at or before it. ``fixed`` maps every offset to one parent span instead (for
    decoded blobs, where the decoded text has no positional relation to the encoded text).
    ``outer_prefix`` is text that precedes the view in its parent (the name a blob is assigned
    to), used by context rules.
    """

    text: str
    encoding: str = "plain"
    parent: View | None = None
    anchors: list[tuple[int, int]] = field(default_factory=list)
    fixed: tuple[int, int] | None = None
    outer_prefix: str = ""
    joins: list[int] = field(default_factory=list)  # view offsets where text was joined

    def _to_parent(self, offset: int) -> int:
        if not self.anchors:
            return offset
        i = bisect.bisect_right(self.anchors, (offset, 1 << 62)) - 1
        v, p = self.anchors[max(i, 0)]
        return p + (offset - v)

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """The span in the original file that ``[start, end)`` of this view comes from."""
        view: View | None = self
        s, e = start, end
        while view is not None and view.parent is not None:
            if view.fixed is not None:
                s, e = view.fixed
            else:
                s, e = view._to_parent(s), view._to_parent(max(e - 1, s)) + 1
            view = view.parent
        return s, e

    def child_encoding(self, encoding: str) -> str:
        return encoding if self.encoding == "plain" else f"{self.encoding}+{encoding}"


_JSON_STRING_LINE = re.compile(r'^([ \t]*)"((?:[^"\\\n]|\\.)*)"[ \t]*,?[ \t]*$', re.MULTILINE)


def notebook_view(raw: str) -> View:
    """A Jupyter notebook with each JSON string line (cell source, output text) unescaped.

    Notebooks store one source or output line per JSON string, so lines map 1:1 and keys
    split across lines of a cell can be rejoined like in any source file.
    """
    parts: list[str] = []
    anchors: list[tuple[int, int]] = []
    out_len = 0
    last = 0
    for m in _JSON_STRING_LINE.finditer(raw):
        try:
            decoded = json.loads(f'"{m.group(2)}"')
        except ValueError:
            continue
        if not isinstance(decoded, str):  # pragma: no cover - a JSON string literal
            continue
        decoded = decoded.rstrip("\n").replace("\n", " ")
        chunk = raw[last : m.start()]
        parts.append(chunk)
        out_len += len(chunk)
        anchors.append((out_len, m.start()))
        piece = m.group(1) + decoded
        parts.append(piece)
        out_len += len(piece)
        last = m.end()
        anchors.append((out_len, last))
    parts.append(raw[last:])
    root = View(raw)
    return View("".join(parts), "notebook", parent=root, anchors=[(0, 0), *anchors])
