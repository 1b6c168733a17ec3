"""The labelled corpus meets its targets, and no committed file of the scanner holds a key."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from keyguard.scan.runner import scan_tree

from .conftest import KEY

ROOT = Path(__file__).resolve().parents[2]
CASK = re.compile(r"[A-Za-z0-9]{52}JQQJ99[A-Za-z0-9]{20}ACOG[A-Za-z0-9]{4}")


def test_scoring_command_meets_targets() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scan" / "score.py")],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "targets (precision and recall >= 0.97): met" in proc.stdout


def test_corpus_has_enough_files() -> None:
    assert len(list((ROOT / "bench" / "scan" / "corpus").rglob("*.tmpl"))) >= 80


def test_scanner_files_contain_no_key() -> None:
    paths = [
        ROOT / "src" / "keyguard" / "scan",
        ROOT / "src" / "keyguard" / "azure_keys.py",
        ROOT / "tests" / "scan",
        ROOT / "bench" / "scan",
        ROOT / "docs" / "scanner.md",
    ]
    existing = [p for p in paths if p.exists()]
    for path in existing:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            assert not CASK.search(file.read_text(errors="replace")), file
    assert scan_tree(existing, KEY, excludes=["__pycache__"]) == []
