"""``keyguard vault ...`` through click's CliRunner, against a temporary SQLite config."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from keyguard.cli import vault as vault_cli
from keyguard.cli.vault import vault_group
from keyguard.config import load_settings
from keyguard.vault.master import load_master_key
from keyguard.wiring.runtime import runtime

SECRET = "azure-key-5f0c2d9e8b7a6"


def invoke(config: Path, *args: str, input: str | None = None) -> Result:
    env = {"KEYGUARD_MASTER_KEY": None, "KEYGUARD_CONFIG": str(config)}
    return CliRunner().invoke(vault_group, [*args], input=input, env=env)


def read_back(config: Path, name: str, version: int | None = None) -> str:
    async def get() -> str:
        async with runtime(load_settings(config), {}) as rt:
            return await rt.vault.get(name, version)

    return asyncio.run(get())


def test_put_from_a_pipe(config_path: Path) -> None:
    result = invoke(config_path, "put", "upstream/east", input=SECRET + "\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("stored upstream/east version 1 (kek id ")
    assert SECRET not in result.output
    assert read_back(config_path, "upstream/east") == SECRET

    result = invoke(config_path, "put", "upstream/east", input="line one\nline two\n\n")
    assert "version 2" in result.stdout
    assert read_back(config_path, "upstream/east") == "line one\nline two\n"
    assert read_back(config_path, "upstream/east", 1) == SECRET


def test_put_prompts_without_echo_on_a_terminal(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vault_cli, "stdin_is_tty", lambda: True)
    result = invoke(config_path, "put", "upstream/east", input=f"{SECRET}\n{SECRET}\n")
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output  # hidden input is not echoed
    assert "Value for upstream/east" in result.output
    assert read_back(config_path, "upstream/east") == SECRET


def test_put_refuses_empty_input(config_path: Path) -> None:
    result = invoke(config_path, "put", "upstream/east", input="")
    assert result.exit_code == 1
    assert result.stderr == "error: no value for upstream/east on standard input\n"


def test_put_never_takes_the_value_as_an_argument(config_path: Path) -> None:
    result = invoke(config_path, "put", "upstream/east", SECRET, input=SECRET)
    assert result.exit_code == 2
    assert "unexpected extra argument" in result.stderr
    assert "upstream/east" not in invoke(config_path, "list").stdout


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("../etc/passwd", 2, "invalid secret name"),
        ("a..b", 2, "invalid secret name"),
        ("keyguard/pepper", 1, "reserved for Keyguard"),
    ],
)
def test_put_bad_names(config_path: Path, name: str, code: int, message: str) -> None:
    result = invoke(config_path, "put", name, input=SECRET)
    assert result.exit_code == code
    assert message in result.stderr


def test_list(config_path: Path) -> None:
    invoke(config_path, "put", "upstream/east", input=SECRET)
    invoke(config_path, "put", "upstream/east", input=SECRET + "2")
    table = invoke(config_path, "list")
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[0].split() == ["NAME", "VERSION", "KEK", "ID", "CREATED"]
    rows = {row["name"]: row for row in json.loads(invoke(config_path, "list", "--json").stdout)}
    assert rows["upstream/east"]["version"] == 2
    master = load_master_key({}, str(config_path.parent / "master.key"))
    assert rows["upstream/east"]["kek_id"] == master.kek_id
    assert SECRET not in table.stdout


def test_wrong_master_key_is_one_error_line(config_path: Path, tmp_path: Path) -> None:
    invoke(config_path, "put", "upstream/east", input=SECRET)
    other = tmp_path / "other.key"
    assert invoke(config_path, "init-master-key", str(other)).exit_code == 0
    result = CliRunner().invoke(
        vault_group,
        ["list", "-c", str(config_path)],
        env={"KEYGUARD_MASTER_KEY": other.read_text().strip()},
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot decrypt keyguard/")
    assert "wrong master key" in result.stderr and "Traceback" not in result.output


def test_init_master_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    path.parent.mkdir()
    result = CliRunner().invoke(vault_group, ["init-master-key", str(path)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    master = load_master_key({}, str(path))
    assert f"kek id {master.kek_id}" in result.stdout
    assert path.read_text().strip() not in result.output

    again = CliRunner().invoke(vault_group, ["init-master-key", str(path)])
    assert again.exit_code == 1
    assert "refusing to overwrite" in again.stderr
    assert load_master_key({}, str(path)) == master


@pytest.mark.parametrize("command", [[], ["put"], ["list"], ["init-master-key"]])
def test_help_has_examples(command: list[str]) -> None:
    result = CliRunner().invoke(vault_group, [*command, "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.stdout and "keyguard vault" in result.stdout
