"""Git history (introducing commit, blob dedupe, --since) and staged changes."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from keyguard.errors import ConfigurationError
from keyguard.scan import testkeys
from keyguard.scan.runner import ScanStats, scan_history, scan_staged

from .conftest import KEY
from .gitrepo import Repo


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


def test_history_reports_introducing_commit_once(repo: Repo) -> None:
    key = testkeys.generate("AZURE")
    c1 = repo.commit({"README.md": "hi\n"})
    c2 = repo.commit({"app.py": f'KEY = "{key}"\n'})
    repo.commit({"app.py": f'KEY = "{key}"\nX = 1\n'})
    repo.commit({"app.py": "X = 1\n"})
    stats = ScanStats()
    findings = scan_history(repo.root, KEY, stats=stats)
    assert [(f.file, f.line, f.commit) for f in findings] == [("app.py", 1, c2)]
    assert c1 != c2 and stats.extra["blobs"] == 4


def test_history_dedupes_blobs_across_renames_and_branches(repo: Repo) -> None:
    hexkey = testkeys.generate("LEGACY")
    text = f"AZURE_OPENAI_API_KEY={hexkey}\n"
    repo.commit({"README.md": "hi\n"})
    repo.git("checkout", "-q", "-b", "feature")
    c_feature = repo.commit({"a/.env": text})
    (repo.root / "b").mkdir()
    repo.git("mv", "a/.env", "b/.env")
    repo.commit({})
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "merge", "feature")
    stats = ScanStats()
    findings = scan_history(repo.root, KEY, stats=stats)
    assert [(f.file, f.commit) for f in findings] == [("a/.env", c_feature)]
    assert stats.files == 2  # README.md and the one .env blob


def test_history_finds_encoded_and_deleted_files(repo: Repo) -> None:
    key = testkeys.generate("KGK")
    b64 = base64.b64encode(key.encode()).decode()
    c1 = repo.commit({"deploy/secret.yaml": f"data:\n  token: {b64}\n"})
    repo.commit({"deploy/secret.yaml": None})
    findings = scan_history(repo.root, KEY)
    assert [(f.kind, f.encoding, f.commit) for f in findings] == [("keyguard_key", "base64", c1)]


def test_history_since(repo: Repo) -> None:
    old = testkeys.generate("AZURE")
    new = testkeys.generate("AZURE", "ai_services")
    c1 = repo.commit({"old.py": f"K = '{old}'\n"})
    c2 = repo.commit({"new.py": f"K = '{new}'\n"})
    findings = scan_history(repo.root, KEY, since=c1)
    assert [(f.file, f.commit) for f in findings] == [("new.py", c2)]


def test_history_errors_outside_a_repository(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        scan_history(tmp_path, KEY)


def test_staged_scans_index_content_not_worktree(repo: Repo) -> None:
    key = testkeys.generate("AZURE")
    repo.commit({"README.md": "hi\n"})
    (repo.root / "app.py").write_text(f'KEY = "{key}"\n')
    repo.git("add", "app.py")
    (repo.root / "app.py").write_text("KEY = None\n")  # worktree differs from index
    (repo.root / "untracked.py").write_text(f'KEY = "{key}"\n')
    findings = scan_staged(repo.root, KEY)
    assert [(f.file, f.kind) for f in findings] == [("app.py", "azure_openai_key")]


def test_parallel_history_scan_finishes(repo: Repo) -> None:
    """Pool workers must not inherit git cat-file's stdin (git would wait for EOF forever)."""
    key = testkeys.generate("AZURE")
    for i in range(6):
        repo.commit({f"f{i}.py": f"X = {i}\n" + (f'K = "{key}"\n' if i == 3 else "")})
    code = (
        "import sys; from pathlib import Path; from keyguard.scan import runner\n"
        "runner.PARALLEL_MIN_BLOBS = 0\n"
        "found = runner.scan_history(Path(sys.argv[1]), b'k', jobs=2)\n"
        "print(len(found))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(repo.root)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert proc.stdout.strip() == "1"
