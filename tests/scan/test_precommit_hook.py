"""The pre-commit hook, run exactly as ``.pre-commit-hooks.yaml`` declares it, in a fresh repo."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from keyguard.scan import testkeys

from .gitrepo import keyguard_bin_dir

ROOT = Path(__file__).resolve().parents[2]


def _hook() -> dict[str, object]:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "keyguard-scan"]
    return dict(hook)


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "repo"
    root.mkdir()
    env = dict(os.environ)
    env.update(
        PATH=f"{keyguard_bin_dir(tmp_path)}{os.pathsep}{env.get('PATH', '')}",
        GIT_AUTHOR_NAME="dev", GIT_AUTHOR_EMAIL="dev@example.com",
        GIT_COMMITTER_NAME="dev", GIT_COMMITTER_EMAIL="dev@example.com",
        GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1",
    )  # fmt: skip
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True, env=env)
    hook = _hook()
    assert hook["language"] == "python" and hook["pass_filenames"] is False
    entry = str(hook["entry"])
    script = root / ".git" / "hooks" / "pre-commit"
    script.write_text(f"#!/bin/sh\n# installed from .pre-commit-hooks.yaml\nexec {entry}\n")
    script.chmod(0o755)
    assert shlex.split(entry)[:2] == ["keyguard", "scan"]
    return root, env


def _git(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, env=env, check=False
    )


def test_staged_key_blocks_the_commit(repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    (root / "README.md").write_text("# service\n")
    assert _git(root, env, "add", "README.md").returncode == 0
    ok = _git(root, env, "commit", "-m", "clean commit")
    assert ok.returncode == 0, ok.stderr

    key = testkeys.generate("AZURE")
    (root / "config.py").write_text(f'API_KEY = "{key}"\n')
    _git(root, env, "add", "config.py")
    blocked = _git(root, env, "commit", "-m", "add config")
    assert blocked.returncode != 0
    assert "config.py:1: Azure OpenAI key" in blocked.stdout + blocked.stderr
    assert key not in blocked.stdout + blocked.stderr
    assert _git(root, env, "rev-list", "--count", "HEAD").stdout.strip() == "1"

    (root / "config.py").write_text('import os\nAPI_KEY = os.environ["AZURE_OPENAI_API_KEY"]\n')
    _git(root, env, "add", "config.py")
    fixed = _git(root, env, "commit", "-m", "add config")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
