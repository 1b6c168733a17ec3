"""Precision and recall of the guardrails' local detectors on the labelled corpus.

    .venv/bin/python bench/guard/score.py [--seed N] [--show-misses] [--check] [--cases DIR]

Fills every case template with freshly generated values (``bench/guard/corpus.py``), runs
the engine on each case (a text, or a request body through ``request_slots``), and compares
the categories reported with the expected ones, per case: an expected category not reported
is a miss (FN), a category reported that was not expected is a false alarm (FP). Reports
precision and recall per family and per category, the false-positive rate on the hard
negatives (cases with any finding / cases) and the prompt-injection cases the local layer
reports anything on (they are for the model-based layer: "not local").
``--check`` exits 1 when precision or recall of secrets or personal data is below 0.97, or
the hard negatives' false-positive rate is 1 % or more. ``--cases`` scores another corpus
directory of the same format (a held-out one).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from corpus import CASES, Case, load_cases  # noqa: E402

from keyguard.guard.engine import GuardEngine  # noqa: E402
from keyguard.guard.extract import request_slots  # noqa: E402
from keyguard.guard.settings import BUILTIN_CATEGORIES, GuardSettings  # noqa: E402

TARGET = 0.97
FP_TARGET = 0.01
_PERSONAL = BUILTIN_CATEGORIES - {"unscanned", "password", "named_secret"}


def family_of(category: str, custom: set[str]) -> str:
    if category in custom:
        return "custom"
    return "personal" if category in _PERSONAL else "secret"


def found_categories(case: Case, engine: GuardEngine) -> set[str]:
    if case.body is not None:
        pairs = engine.scan_slots(request_slots(case.operation, case.body))
        return {m.category for _, m in pairs}
    assert case.text is not None
    return {m.category for m in engine.scan(case.text)}


def _ratio(a: int, b: int) -> float:
    return a / b if b else 1.0


def _table(rows: list[tuple[object, ...]], head: tuple[str, ...]) -> str:
    cells = [tuple(str(c) for c in head)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in cells]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="repeatable values")
    parser.add_argument("--cases", type=Path, default=CASES, help="corpus directory")
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 below the targets")
    args = parser.parse_args()
    cases = load_cases(args.seed, args.cases)
    engines: dict[str, GuardEngine] = {}
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    fam_tp: Counter[str] = Counter()
    fam_fp: Counter[str] = Counter()
    fam_fn: Counter[str] = Counter()
    negatives = negatives_hit = injections = injections_hit = 0
    notes: list[str] = []
    for case in cases:
        key = repr(sorted(case.config.items()))
        if key not in engines:
            engines[key] = GuardEngine(GuardSettings.model_validate(case.config))
        custom = {r["name"] for kind in ("blocklists", "patterns")
                  for r in case.config.get(kind, [])}  # fmt: skip
        found = found_categories(case, engines[key])
        for cat in found & case.expect:
            tp[cat] += 1
            fam_tp[family_of(cat, custom)] += 1
        for cat in found - case.expect:
            fp[cat] += 1
            fam_fp[family_of(cat, custom)] += 1
            notes.append(f"FALSE  {case.id}: {cat}")
        for cat in case.expect - found:
            fn[cat] += 1
            fam_fn[family_of(cat, custom)] += 1
            notes.append(f"MISSED {case.id}: {cat}")
        if case.family == "negative":
            negatives += 1
            negatives_hit += bool(found - case.expect)
        if case.family == "injection":
            injections += 1
            injections_hit += bool(found)
    by_family = Counter(c.family for c in cases)
    print(
        f"corpus: {len(cases)} cases " + ", ".join(f"{k} {v}" for k, v in sorted(by_family.items()))
    )
    print()
    cats = sorted(set(tp) | set(fp) | set(fn))
    print(_table([(c, tp[c], fp[c], fn[c], f"{_ratio(tp[c], tp[c] + fp[c]):.3f}",
                   f"{_ratio(tp[c], tp[c] + fn[c]):.3f}") for c in cats],
                 ("category", "TP", "FP", "FN", "precision", "recall")))  # fmt: skip
    print()
    rows = []
    ok = True
    for fam in ("secret", "personal", "custom"):
        p = _ratio(fam_tp[fam], fam_tp[fam] + fam_fp[fam])
        r = _ratio(fam_tp[fam], fam_tp[fam] + fam_fn[fam])
        rows.append((fam, fam_tp[fam], fam_fp[fam], fam_fn[fam], f"{p:.3f}", f"{r:.3f}"))
        if fam in ("secret", "personal") and (p < TARGET or r < TARGET):
            ok = False
    print(_table(rows, ("family", "TP", "FP", "FN", "precision", "recall")))
    rate = _ratio(negatives_hit, negatives) if negatives else 0.0
    ok = ok and rate < FP_TARGET
    print(f"\nhard negatives: {negatives_hit} of {negatives} cases with a false positive "
          f"({rate:.1%})")  # fmt: skip
    print(f"prompt injections (model-based layer, not local): {injections} cases, "
          f"{injections_hit} with a local finding")  # fmt: skip
    if args.show_misses:
        print("\n" + "\n".join(notes))
    print(f"\ntargets (secrets and personal data >= {TARGET}, hard negatives < {FP_TARGET:.0%}): "
          + ("met" if ok else "NOT met"))  # fmt: skip
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
