"""Every error a user can cause is one line on stderr, with exit status 2 (usage) or 1
(failure), and no traceback: each command driven with wrong inputs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from keyguard.cli.main import cli
from keyguard.vault.master import create_master_key_file

ENV = {"KEYGUARD_MASTER_KEY": None, "KEYGUARD_CONFIG": None, "KEYGUARD_DEBUG": None}


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A directory of wrong inputs, and one good config (``good.yaml``) to spoil."""
    create_master_key_file(tmp_path / "master.key")
    create_master_key_file(tmp_path / "other.key")
    good = "store: sqlite:///k.db\nmaster_key_file: master.key\n"
    (tmp_path / "good.yaml").write_text(good)
    (tmp_path / "bad-yaml.yaml").write_text("listen: [\n  proxy: x\n")
    (tmp_path / "unknown-key.yaml").write_text(good + "stroe: sqlite:///x.db\n")
    (tmp_path / "wrong-type.yaml").write_text(good + "proxy:\n  max_body_bytes: lots\n")
    (tmp_path / "top-list.yaml").write_text("- a\n- b\n")
    (tmp_path / "no-master.yaml").write_text("store: sqlite:///k.db\nmaster_key_file: nope.key\n")
    (tmp_path / "wrong-master.yaml").write_text(
        "store: sqlite:///k.db\nmaster_key_file: other.key\n"
    )
    (tmp_path / "unreachable.yaml").write_text(
        "store: postgresql://127.0.0.1:1/x\nmaster_key_file: master.key\n"
    )
    (tmp_path / "emulator-bad.yaml").write_text("deployments:\n  gpt:\n    kinds: chat\n")
    (tmp_path / "requests.jsonl").write_text("{not json\n")
    return tmp_path


def one_line_error(args: list[str], code: int, cwd: Path, stdin: str = "") -> str:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, args, env=ENV, input=stdin)
    finally:
        os.chdir(old)
    stderr = result.stderr
    assert result.exit_code == code, (args, result.exit_code, stderr, result.exception)
    assert "Traceback" not in stderr + result.stdout, (args, stderr)
    assert len(stderr.strip().splitlines()) == 1, (args, stderr)
    assert stderr.startswith("error: "), (args, stderr)
    return stderr.strip()


CASES = [
    # usage errors: exit 2
    (["nosuch"], 2, "No such command"),
    (["keys", "create"], 2, "--app"),
    (["keys", "create", "--app", "x", "--expires", "soon", "-c", "good.yaml"], 2, "soon"),
    (["emulator", "--config", "missing.yaml"], 2, "missing.yaml"),
    (["emulator", "--port", "http"], 2, "http"),
    (["policy", "check", "missing-policy.yaml"], 1, "does not exist"),
    (["vault", "put", "../etc", "-c", "good.yaml"], 2, "NAME"),
    (["replay", "missing.jsonl"], 2, "missing.jsonl"),
    # a missing, unreadable or invalid config: exit 1, naming the file (and line)
    (["keys", "list"], 1, "pass --config PATH or set KEYGUARD_CONFIG"),
    (["serve", "-c", "missing.yaml"], 1, "does not exist"),
    (["vault", "list", "-c", "bad-yaml.yaml"], 1, "bad-yaml.yaml:3: not valid YAML"),
    (["policy", "show", "-c", "unknown-key.yaml"], 1, "unknown-key.yaml:3: stroe: unknown key"),
    (["rotate", "status", "-c", "unknown-key.yaml"], 1, "did you mean 'store'?"),
    (["alerts", "list", "-c", "wrong-type.yaml"], 1, "wrong-type.yaml:4: proxy.max_body_bytes"),
    (["audit", "verify", "-c", "top-list.yaml"], 1, "mapping at the top"),
    (["admin", "tokens", "list", "-c", "no-master.yaml"], 1, "nope.key"),
    (["emulator", "--config", "emulator-bad.yaml"], 1, "did you mean 'kind'?"),
    # wrong master key, unreachable services, files that are there already
    (["keys", "list", "-c", "wrong-master.yaml"], 1, "wrong master key"),
    (["keys", "list", "-c", "unreachable.yaml"], 1, "cannot open store"),
    (["vault", "init-master-key", "master.key"], 1, "already exists"),
    (["replay", "requests.jsonl"], 1, ""),
    (["scan", "--staged", "."], 2, "not in a git repository"),
]


@pytest.mark.parametrize(("args", "code", "says"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_a_wrong_input_is_one_line(files: Path, args: list[str], code: int, says: str) -> None:
    if "wrong-master.yaml" in args:  # the store's secrets sealed under master.key first
        _init_store(files)
    line = one_line_error(args, code, files)
    assert says in line


def _init_store(files: Path) -> None:
    old = Path.cwd()
    os.chdir(files)
    try:
        result = CliRunner().invoke(cli, ["keys", "list", "-c", "good.yaml"], env=ENV)
    finally:
        os.chdir(old)
    assert result.exit_code == 0, result.stderr


def test_debug_shows_the_traceback(files: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--debug", "emulator", "--config", str(files / "emulator-bad.yaml")], env=ENV
    )
    assert result.exit_code == 1
    assert result.exception is not None and "kind" in str(result.exception)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _keyguard(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGUARD_")}
    return subprocess.run(
        [sys.executable, "-m", "keyguard", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", ["serve", "demo", "emulator"])
def test_a_port_in_use_is_one_line_naming_the_fix(
    files: Path, busy_port: int, command: str
) -> None:
    if command == "serve":
        (files / "busy.yaml").write_text(
            "store: sqlite:///k.db\nmaster_key_file: master.key\n"
            f"listen: {{proxy: '127.0.0.1:{busy_port}', admin: '127.0.0.1:0'}}\n"
        )
        args = ["serve", "-c", "busy.yaml"]
    else:
        args = [command, "--port", str(busy_port)]
    done = _keyguard(args, files)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    assert "address already in use" in errors[0].lower()
    assert f"{busy_port}" in errors[0]
    assert "--port" in errors[0] or "listen.proxy" in errors[0]
    assert done.stderr.strip().splitlines()[-1] == errors[0]
    for line in done.stderr.splitlines()[:-1]:  # the logs before it: JSON, stderr is no terminal
        assert isinstance(orjson.loads(line), dict), line
