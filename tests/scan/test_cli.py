"""``keyguard scan`` command: exit codes, formats, baseline, option errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from keyguard.cli.scan import scan_command
from keyguard.scan import testkeys


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, str]:
    key = testkeys.generate("AZURE")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text(f'KEY = "{key}"\n')
    (tmp_path / "clean.py").write_text("print('hi')\n")
    return tmp_path, key


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(scan_command, list(args), env=env or {})
    return result.exit_code, result.stdout, result.stderr


def test_exit_1_when_found_and_0_when_clean(tree: tuple[Path, str]) -> None:
    root, key = tree
    code, out, err = run(str(root))
    assert code == 1 and "src/app.py:1: Azure OpenAI key (high)" in out
    assert key not in out + err and "1 finding(s)" in err
    code, out, _ = run(str(root / "clean.py"))
    assert code == 0 and out == ""


def test_jsonl_and_sarif(tree: tuple[Path, str], tmp_path: Path) -> None:
    root, key = tree
    code, out, _ = run(str(root), "--format", "jsonl")
    row = json.loads(out)
    assert code == 1 and row["file"] == "src/app.py" and row["kind"] == "azure_openai_key"
    sarif = tmp_path / "out.sarif"
    code, out, _ = run(str(root), "--format", "sarif", "-o", str(sarif))
    assert code == 1 and out == ""
    assert json.loads(sarif.read_text())["runs"][0]["results"][0]["ruleId"] == "azure_openai_key"
    assert key not in sarif.read_text()


def test_baseline_flow(tree: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = tree
    baseline = tmp_path / "baseline.json"
    assert run(str(root), "--write-baseline", str(baseline))[0] == 0
    assert run(str(root), "--baseline", str(baseline))[0] == 0
    (root / "new.py").write_text(f"K = '{testkeys.generate('KGK')}'\n")
    code, out, _ = run(str(root), "--baseline", str(baseline))
    assert code == 1 and "new.py" in out and "src/app.py" not in out
    # A different fingerprint key cannot use the baseline: a configuration error, exit 2.
    code, _, err = run(
        str(root), "--baseline", str(baseline), env={"KEYGUARD_FINGERPRINT_KEY": "x" * 40}
    )
    assert code == 2 and "another fingerprint key" in err


def test_fingerprint_key_changes_fingerprints(tree: tuple[Path, str], tmp_path: Path) -> None:
    root, _ = tree
    keyfile = tmp_path / "fp.key"
    keyfile.write_text("ab" * 32)
    a = json.loads(run(str(root), "--format", "jsonl")[1])["fingerprint"]
    b = json.loads(run(str(root), "--format", "jsonl", "--fingerprint-key-file", str(keyfile))[1])
    c = json.loads(
        run(str(root), "--format", "jsonl", env={"KEYGUARD_FINGERPRINT_KEY": "ab" * 32})[1]
    )
    assert a != b["fingerprint"] and b["fingerprint"] == c["fingerprint"]


def test_exclude_and_min_confidence(tree: tuple[Path, str]) -> None:
    root, _ = tree
    assert run(str(root), "--exclude", "src")[0] == 0
    (root / "cfg.yaml").write_text(
        f"endpoint: https://x.openai.azure.com\nkey: {testkeys.generate('LEGACY')}\n"
    )
    code, out, _ = run(str(root), "--exclude", "src", "--format", "jsonl")
    assert code == 1 and json.loads(out)["confidence"] == "medium"
    assert run(str(root), "--exclude", "src", "--min-confidence", "high")[0] == 0


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "HEAD"],
        ["--respond"],
        ["--format", "xml"],
        ["--staged", "--git-history"],
        ["does-not-exist"],
    ],
)
def test_usage_errors_exit_2(args: list[str], tree: tuple[Path, str]) -> None:
    assert run(*args)[0] == 2


def test_configuration_errors_exit_2(tree: tuple[Path, str]) -> None:
    root, _ = tree
    code, _, err = run(str(root), "--git-history")
    assert code == 2 and "git" in err
    config = root / "keyguard.yaml"
    config.write_text("{}\n")
    code, _, err = run(str(root), "--config", str(config), "--respond")
    assert code == 2 and "master key" in err  # a gateway config without its vault key


def test_several_roots_report_paths_under_their_common_parent(tmp_path: Path) -> None:
    """``keyguard scan src config`` reports ``config/.env``, not an ambiguous ``.env``."""
    for root in ("src", "config"):
        (tmp_path / root).mkdir()
        (tmp_path / root / ".env").write_text(f"KEYGUARD_KEY={testkeys.generate('KGK')}\n")
    code, out, _ = run(str(tmp_path / "src"), str(tmp_path / "config"), "--format", "jsonl")
    assert code == 1
    assert sorted(json.loads(line)["file"] for line in out.splitlines()) == [
        "config/.env",
        "src/.env",
    ]
    code, out, _ = run(str(tmp_path / "config"), "--format", "jsonl")  # one root: relative to it
    assert [json.loads(line)["file"] for line in out.splitlines()] == [".env"]
    excluded = run(str(tmp_path / "src"), str(tmp_path / "config"), "--exclude", "config/*")
    assert "config/.env" not in excluded[1] and "src/.env" in excluded[1]


def test_option_defaults_match_the_modules_they_mirror() -> None:
    from keyguard.cli import scan as cli
    from keyguard.scan.output import FORMATS
    from keyguard.scan.walker import DEFAULT_MAX_SIZE

    assert cli._FORMATS == FORMATS and cli._DEFAULT_MAX_KIB * 1024 == DEFAULT_MAX_SIZE


def test_keyguard_scan_does_not_import_the_gateway(tmp_path: Path) -> None:
    """Start-up: ``keyguard scan`` (a pre-commit hook, a CI step on a small tree) must not pay
    for importing the gateway (aiohttp, SQLAlchemy, the runtime: over a second of CPU)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from keyguard.cli.main import cli\n"
        "try:\n"
        "    cli(['scan', sys.argv[1]])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('aiohttp', 'sqlalchemy', 'keyguard.runtime', 'keyguard.server', 'openai')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(heavy)}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == "[]", proc.stdout
