"""``keyguard keys ...`` through click's CliRunner, against a temporary SQLite config."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from keyguard.cli.keys import keys_group
from keyguard.config import load_settings
from keyguard.keys.format import parse_key
from keyguard.store.base import KeyRecord
from keyguard.wiring.runtime import runtime

ENV = {"KEYGUARD_MASTER_KEY": None}


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(keys_group, [*args], env={**ENV, "KEYGUARD_CONFIG": str(config)})


def stored(config: Path, key_id: str) -> KeyRecord:
    async def get() -> KeyRecord:
        async with runtime(load_settings(config), {}) as rt:
            return await rt.keys.get(key_id)

    return asyncio.run(get())


def test_create_prints_the_key_once_with_a_warning(config_path: Path) -> None:
    result = invoke(config_path, "create", "--app", "billing-bot", "--expires", "90d")
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    key = parse_key(lines["key"].strip())
    assert key is not None and key.key_id == lines["key id"].strip()
    assert "cannot be shown again" in result.stderr
    record = stored(config_path, key.key_id)
    assert record.app == "billing-bot"
    assert record.expires_at is not None
    assert record.expires_at - record.created_at == timedelta(days=90)


def test_create_json(config_path: Path) -> None:
    result = invoke(config_path, "create", "--app", "ci", "--json", "--description", "smoke")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {
        "key_id",
        "app",
        "key",
        "state",
        "created_at",
        "expires_at",
        "revoked_at",
        "suspended_at",
        "description",
    }
    assert data["app"] == "ci" and data["expires_at"] is None
    assert parse_key(data["key"]) is not None
    assert datetime.fromisoformat(data["created_at"]).tzinfo is not None
    assert stored(config_path, data["key_id"]).description == "smoke"


def test_list_shows_states_and_never_secrets(config_path: Path) -> None:
    keys = [json.loads(invoke(config_path, "create", "--app", "a", "--json").stdout) for _ in "ab"]
    assert invoke(config_path, "revoke", keys[1]["key_id"]).exit_code == 0

    result = invoke(config_path, "list")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == [
        "KEY",
        "ID",
        "APP",
        "STATE",
        "CREATED",
        "EXPIRES",
    ]
    assert keys[0]["key_id"] in result.stdout and "active" in result.stdout
    assert keys[1]["key_id"] not in result.stdout

    result = invoke(config_path, "list", "--all", "--json")
    rows = {row["key_id"]: row for row in json.loads(result.stdout)}
    assert rows[keys[1]["key_id"]]["state"] == "revoked"
    assert rows[keys[0]["key_id"]]["state"] == "active"
    everything = invoke(config_path, "list", "--all").stdout + result.stdout
    for key in keys:
        assert key["key"] not in everything
        assert stored(config_path, key["key_id"]).digest not in everything
    assert json.loads(invoke(config_path, "list", "--app", "other", "--json").stdout) == []


def test_revoke(config_path: Path) -> None:
    key_id = json.loads(invoke(config_path, "create", "--app", "a", "--json").stdout)["key_id"]
    result = invoke(config_path, "revoke", key_id)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"revoked key {key_id} (app a) at ")
    assert stored(config_path, key_id).revoked_at is not None


def test_unknown_key_is_one_error_line(config_path: Path) -> None:
    result = invoke(config_path, "revoke", "AAAAAAAAAAAA")
    assert result.exit_code == 1
    assert result.stderr == "error: no key with id 'AAAAAAAAAAAA'\n"
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--app", "bad app"], "invalid app name"),
        (["create", "--app", "a", "--expires", "soon"], "invalid duration"),
        (["create"], "Missing option '--app'"),
        (["list", "--app", "-x-"], "invalid app name"),
        (["revoke"], "Missing argument"),
    ],
)
def test_usage_errors_exit_2(config_path: Path, args: list[str], message: str) -> None:
    result = invoke(config_path, *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_missing_config_and_missing_master_key(tmp_path: Path) -> None:
    result = invoke(tmp_path / "absent.yaml", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: config file") and "does not exist" in result.stderr
    config = tmp_path / "keyguard.yaml"
    config.write_text("store: sqlite:///keyguard.db\n")
    result = invoke(config, "list")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no master key: set KEYGUARD_MASTER_KEY")
    assert "Traceback" not in result.output


def test_config_option_beats_the_environment(config_path: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        keys_group,
        ["list", "-c", str(config_path)],
        env={**ENV, "KEYGUARD_CONFIG": str(tmp_path / "absent.yaml")},
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", [[], ["create"], ["list"], ["revoke"]])
def test_help_has_examples(command: list[str]) -> None:
    result = CliRunner().invoke(keys_group, [*command, "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.stdout and "keyguard keys" in result.stdout


@pytest.mark.slow
def test_real_entry_point(config_path: Path) -> None:
    exe = Path(sys.executable).with_name("keyguard")
    env = {k: v for k, v in os.environ.items() if k != "KEYGUARD_MASTER_KEY"}
    env["KEYGUARD_CONFIG"] = str(config_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(exe), *args], env=env, capture_output=True, text=True, timeout=60
        )

    usage = run("--help")
    if usage.returncode != 0 or not {"keys", "vault"} <= set(usage.stdout.split()):
        last = (usage.stderr.strip().splitlines() or [""])[-1]
        pytest.skip(f"the keyguard entry point does not list keys and vault yet ({last})")
    created = run("keys", "create", "--app", "billing-bot", "--json")
    assert created.returncode == 0, created.stderr
    assert stored(config_path, json.loads(created.stdout)["key_id"]).app == "billing-bot"
    failed = run("keys", "revoke", "nope")
    assert failed.returncode == 1
    assert failed.stderr == "error: no key with id 'nope'\n"


def test_times_are_utc_iso(config_path: Path) -> None:
    data = json.loads(
        invoke(config_path, "create", "--app", "a", "--expires", "1h", "--json").stdout
    )
    created = datetime.fromisoformat(data["created_at"])
    assert data["created_at"].endswith("Z") and created.tzinfo is not None
    assert abs(created - datetime.now(UTC)) < timedelta(minutes=5)
    assert datetime.fromisoformat(data["expires_at"]) - created == timedelta(hours=1)
