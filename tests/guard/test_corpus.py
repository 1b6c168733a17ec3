"""The guardrails' labelled corpus: big enough, meets its targets, and nothing committed for
the guardrails (code, tests, corpus, docs) holds a secret or a valid personal value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from keyguard.guard.engine import GuardEngine
from keyguard.scan.runner import scan_tree

from ..scan.conftest import KEY

ROOT = Path(__file__).resolve().parents[2]


def test_scoring_command_meets_targets_with_400_cases_or_more() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "guard" / "score.py"), "--check"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cases = int(proc.stdout.split("corpus: ", 1)[1].split(" ", 1)[0])
    assert cases >= 400
    assert "targets (secrets and personal data >= 0.97, hard negatives < 1%): met" in proc.stdout


def test_guardrail_files_hold_no_secret() -> None:
    paths = [
        ROOT / "src" / "keyguard" / "guard",
        ROOT / "tests" / "guard",
        ROOT / "bench" / "guard",
        ROOT / "docs" / "guardrails-detectors.md",
    ]
    assert scan_tree([p for p in paths if p.exists()], KEY, jobs=1) == []


def test_the_corpus_templates_hold_no_secret_of_their_own() -> None:
    engine = GuardEngine()
    for path in (ROOT / "bench" / "guard" / "corpus").glob("*.yaml"):
        secrets = [m for m in engine.scan(path.read_text()) if m.family == "secret"]
        assert secrets == [], path
