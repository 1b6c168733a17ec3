"""The file walker: excludes, skipped directories, binaries, size limit, relative paths."""

from __future__ import annotations

from pathlib import Path

from keyguard.scan import testkeys
from keyguard.scan.runner import ScanStats, scan_tree
from keyguard.scan.walker import is_excluded, iter_files

from .conftest import KEY


def _tree(root: Path) -> str:
    key = testkeys.generate("AZURE")
    files = {
        "src/app.py": f'KEY = "{key}"\n',
        "src/vendor/lib.py": f'KEY = "{key}"\n',
        "node_modules/pkg/index.js": f'const k = "{key}";\n',
        ".git/config": f"k={key}\n",
        "tests/fixtures/data.txt": f"{key}\n",
        "docs/readme.md": "nothing here\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "img.png").write_bytes(b"\x89PNG" + key.encode())
    (root / "blob.dat").write_bytes(b"\0\1\2" + key.encode())
    (root / "big.txt").write_text(key + "\n" + "x" * 20000)
    return key


def test_walk_skips_and_excludes(tmp_path: Path) -> None:
    _tree(tmp_path)
    rels = {e.rel for e in iter_files(tmp_path, excludes=["src/vendor/*"], max_size=10_000)}
    assert rels == {"src/app.py", "tests/fixtures/data.txt", "docs/readme.md", "blob.dat"}


def test_scan_tree_reports_relative_paths_and_counts(tmp_path: Path) -> None:
    _tree(tmp_path)
    stats = ScanStats()
    findings = scan_tree([tmp_path], KEY, excludes=["tests"], max_size=10_000, stats=stats)
    assert {f.file for f in findings} == {"src/app.py", "src/vendor/lib.py"}
    assert stats.files == 3 and stats.skipped == 1  # blob.dat is binary


def test_single_file_root(tmp_path: Path) -> None:
    _tree(tmp_path)
    findings = scan_tree([tmp_path / "src" / "app.py"], KEY)
    assert [f.file for f in findings] == ["app.py"]


def test_exclude_patterns() -> None:
    assert is_excluded("a/b/c.py", ["a"])
    assert is_excluded("a/b/c.py", ["*.py"])
    assert is_excluded("a/b/c.py", ["a/b/*"])
    assert is_excluded("a/b/c.py", ["b/"]) is False
    assert not is_excluded("a/b/c.py", [])


def test_parallel_scan_matches_serial(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from keyguard.scan import runner

    key = testkeys.generate("AZURE")
    for i in range(40):
        (tmp_path / f"f{i}.py").write_text(
            "x = 1\n" * 2000 + (f'K = "{key}"\n' if i % 7 == 0 else "")
        )
    serial = scan_tree([tmp_path], KEY, jobs=1)
    monkeypatch.setattr(runner, "PARALLEL_MIN_BYTES", 0)
    parallel = scan_tree([tmp_path], KEY, jobs=2)
    assert serial == parallel and len(serial) == 6
