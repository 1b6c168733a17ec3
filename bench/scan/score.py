"""Precision and recall of ``keyguard scan`` on the labelled corpus and the git history.

    .venv/bin/python bench/scan/score.py [--keep DIR] [--show-misses]

Fills every template with freshly generated keys in a temporary directory, scans it, and
matches findings to labels by file, line range and fingerprint; then builds the git history
scenario and checks each leak is reported once, at the commit that introduced it. Exits 1
when precision or recall is below 0.97.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from corpus import Label, fill_corpus, template_files  # noqa: E402
from history import build_history  # noqa: E402
from scoring import Reported, Score, score, table  # noqa: E402

from keyguard.scan.findings import Finding  # noqa: E402
from keyguard.scan.fingerprint import fingerprint  # noqa: E402
from keyguard.scan.runner import scan_history, scan_tree  # noqa: E402

TARGET = 0.97


def _reported(findings: list[Finding]) -> list[Reported]:
    return [Reported(f.file, f.line, f.end_line, f.kind, f.fingerprint, f.commit) for f in findings]


def corpus_score(tree: Path, key: bytes) -> tuple[Score, list[Label], float]:
    labels = fill_corpus(tree)
    start = time.perf_counter()
    findings = scan_tree([tree], key, jobs=1)
    elapsed = time.perf_counter() - start
    return score(_reported(findings), labels, lambda s: fingerprint(s, key)), labels, elapsed


def history_score(repo: Path, key: bytes) -> Score:
    hlabels = build_history(repo)
    findings = scan_history(repo, key, jobs=1)
    result = Score()
    expected = {(h.file, fingerprint(h.secret, key)): h for h in hlabels}
    seen = set()
    for f in findings:
        h = expected.get((f.file, f.fingerprint))
        if h is None or h.commit != f.commit:
            result.fp += 1
            result.false.append(
                Reported(f.file, f.line, f.end_line, f.kind, f.fingerprint, f.commit)
            )
        else:
            seen.add((h.file, f.fingerprint))
    result.tp = len(seen)
    result.fn = len(expected) - len(seen)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="fill the corpus here instead of a temp dir")
    parser.add_argument("--show-misses", action="store_true", help="list misses and false alarms")
    args = parser.parse_args()
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        result, labels, elapsed = corpus_score(base / "corpus", key)
        hist = history_score(base / "history", key)

    files = len(template_files())
    print(f"corpus: {files} files, {len(labels)} labelled secrets, scanned in {elapsed:.2f} s\n")
    forms = sorted({lab.form for lab in labels})
    rows = [(form, result.by_form[(form, "tp")], result.by_form[(form, "fn")]) for form in forms]
    print(table(rows, ("form", "found", "missed")) + "\n")
    kinds = sorted({lab.kind for lab in labels})
    rows = [(k, result.by_kind[(k, "tp")], result.by_kind[(k, "fn")]) for k in kinds]
    print(table(rows, ("kind", "found", "missed")) + "\n")
    total = Score(tp=result.tp + hist.tp, fp=result.fp + hist.fp, fn=result.fn + hist.fn)
    rows = [
        (
            "files",
            result.tp,
            result.fp,
            result.fn,
            f"{result.precision:.3f}",
            f"{result.recall:.3f}",
        ),
        ("git history", hist.tp, hist.fp, hist.fn, f"{hist.precision:.3f}", f"{hist.recall:.3f}"),
        ("total", total.tp, total.fp, total.fn, f"{total.precision:.3f}", f"{total.recall:.3f}"),
    ]
    print(table(rows, ("set", "TP", "FP", "FN", "precision", "recall")))
    print(f"\nkind mismatches among found secrets: {result.kind_mismatch}")
    if args.show_misses:
        for lab in result.missed:
            print(f"MISSED {lab.file}:{lab.line}-{lab.end_line} {lab.kind} ({lab.form})")
        for rep in result.false + hist.false:
            print(f"FALSE  {rep.file}:{rep.line} {rep.kind} {rep.commit or ''}")
    ok = total.precision >= TARGET and total.recall >= TARGET
    print(f"\ntargets (precision and recall >= {TARGET}): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
