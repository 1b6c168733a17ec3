"""The code blocks of the documentation, and what each is: run, or marked as not run.

A fenced block in ``sh``, ``bash``, ``shell``, ``console`` (its ``$ `` lines) or ``python`` is
meant to be run, unless the line just above it (blank lines between allowed) is a marker:

* ``<!-- not run: REASON -->``: the block cannot run in a test (it installs, benchmarks, needs
  Azure or names example ids); it is counted, and the reason must be given;
* ``<!-- file: NAME -->`` (above a ``yaml``/``json``/text block): the block's text is written to
  ``NAME`` in the document's working directory, for the commands after it.

Any other language is prose (a config excerpt, an output sample) and is not run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Block", "blocks_of", "RUNNABLE"]

RUNNABLE = frozenset({"sh", "bash", "shell", "console", "python"})
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_MARKER = re.compile(r"<!--\s*(not run|file):\s*(.*?)\s*-->\s*\Z", re.S)


@dataclass(frozen=True)
class Block:
    doc: str  # README.md, docs/quickstart.md
    line: int  # the line of the opening fence
    lang: str
    text: str
    not_run: str | None = None  # the reason given
    file: str | None = None  # write the text to this file

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUNNABLE and self.not_run is None and self.file is None

    def commands(self) -> str:
        """The shell to run: the block, or a console block's ``$`` lines (with their
        continuation lines)."""
        if self.lang != "console":
            return self.text
        out: list[str] = []
        continuing = False
        for line in self.text.splitlines():
            if line.startswith("$ "):
                out.append(line[2:])
                continuing = line.rstrip().endswith("\\")
            elif continuing:
                out.append(line)
                continuing = line.rstrip().endswith("\\")
        return "\n".join(out) + "\n"


def blocks_of(root: Path, doc: str) -> list[Block]:
    text = (root / doc).read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        marker = _MARKER.search(before[-400:])
        not_run = file = None
        if marker is not None:
            if marker.group(1) == "not run":
                not_run = marker.group(2)
            else:
                file = marker.group(2)
        found.append(
            Block(
                doc=doc,
                line=text.count("\n", 0, match.start()) + 1,
                lang=match.group(1).lower(),
                text=match.group(2),
                not_run=not_run,
                file=file,
            )
        )
    return found
