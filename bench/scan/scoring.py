"""Score a scanner's findings against corpus labels: precision, recall, per form and kind."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from corpus import Label


@dataclass(frozen=True)
class Reported:
    """One finding, reduced to what every tool reports: file and line range."""

    file: str
    line: int
    end_line: int
    kind: str = ""
    fingerprint: str | None = None
    commit: str | None = None


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    missed: list[Label] = field(default_factory=list)
    false: list[Reported] = field(default_factory=list)
    by_form: Counter[tuple[str, str]] = field(default_factory=Counter)  # (form, "tp"|"fn")
    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)
    kind_mismatch: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def score(
    reported: Iterable[Reported],
    labels: Sequence[Label],
    fingerprint: Callable[[str], str] | None = None,
) -> Score:
    """Match findings to labels by file and overlapping lines (and fingerprint when given).

    A label is found when at least one finding matches it; a finding that matches no label is
    a false positive; extra findings on an already found label are not counted twice.
    """
    result = Score()
    by_file: dict[str, list[tuple[int, Label]]] = {}
    for i, lab in enumerate(labels):
        by_file.setdefault(lab.file, []).append((i, lab))
    expected_fp = (
        {i: fingerprint(lab.secret) for i, lab in enumerate(labels)} if fingerprint else {}
    )
    found: set[int] = set()
    for rep in reported:
        match = None
        for i, lab in by_file.get(rep.file, []):
            if rep.line > lab.end_line or rep.end_line < lab.line:
                continue
            if fingerprint is not None and rep.fingerprint != expected_fp[i]:
                continue
            match = (i, lab)
            if i not in found:
                break
        if match is None:
            result.fp += 1
            result.false.append(rep)
            continue
        i, lab = match
        if i not in found and rep.kind and rep.kind != lab.kind:
            result.kind_mismatch += 1
        found.add(i)
    for i, lab in enumerate(labels):
        outcome = "tp" if i in found else "fn"
        result.by_form[(lab.form, outcome)] += 1
        result.by_kind[(lab.kind, outcome)] += 1
        if outcome == "fn":
            result.missed.append(lab)
    result.tp = len(found)
    result.fn = len(labels) - len(found)
    return result


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)
