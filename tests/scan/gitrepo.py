"""A throw-away git repository for the history tests, isolated from the user's git config,
and a PATH entry providing ``keyguard`` for tests that run commands as a shell would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def keyguard_bin_dir(tmp_path: Path) -> Path:
    """A PATH entry providing ``keyguard``: the installed console script when it runs, else an
    equivalent launcher for the same click command (the group registers ``scan_command``)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    real = Path(sys.executable).parent / "keyguard"
    probe = subprocess.run([str(real), "scan", "--help"], capture_output=True, check=False)
    launcher = bindir / "keyguard"
    if probe.returncode == 0:
        launcher.symlink_to(real)
    else:
        launcher.write_text(
            f"#!{sys.executable}\n"
            "import click, sys\n"
            "from keyguard.cli.scan import scan_command\n"
            "group = click.Group('keyguard', commands={'scan': scan_command})\n"
            "sys.exit(group())\n"
        )
        launcher.chmod(0o755)
    return bindir


def git_test_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com",
        GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1",
    )  # fmt: skip
    return env


class Repo:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.env = git_test_env()
        self.git("init", "-q", "-b", "main")
        self.n = 0

    def git(self, *args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(self.root), *args],
            check=True, capture_output=True, text=True, env=self.env,
        )  # fmt: skip
        return out.stdout.strip()

    def commit(self, files: dict[str, str | None], message: str = "c") -> str:
        for rel, text in files.items():
            if text is None:
                self.git("rm", "-q", rel)
                continue
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.root / rel).write_text(text)
            self.git("add", rel)
        self.n += 1
        self.env["GIT_AUTHOR_DATE"] = self.env["GIT_COMMITTER_DATE"] = (
            f"{1700000000 + self.n * 60} +0000"
        )
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")
