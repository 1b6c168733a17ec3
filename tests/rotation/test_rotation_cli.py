"""The commands: ``keyguard rotate upstream|status``, ``keyguard keys rotate``,
``keyguard keys list --expiring`` and ``keyguard vault rekey``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from keyguard.cli.main import cli
from keyguard.config import load_settings
from keyguard.vault.master import create_master_key_file, load_master_key
from keyguard.wiring.runtime import runtime
from tests.support.emulators import AzureEmulator, data_plane_status
from tests.support.settings import write_config

from .rotation_helpers import rotation_settings


def invoke(config: Path, *args: str, env: dict[str, Any] | None = None) -> Result:
    return CliRunner().invoke(
        cli,
        [*args],
        env={"KEYGUARD_MASTER_KEY": None, "KEYGUARD_CONFIG": str(config), **(env or {})},
    )


def test_keys_rotate_prints_the_new_key_once_and_replays_a_token(config_path: Path) -> None:
    created = json.loads(invoke(config_path, "keys", "create", "--app", "a", "--json").stdout)
    args = ["keys", "rotate", created["key_id"], "--grace", "1h", "--idempotency-token", "d-1"]
    first = invoke(config_path, *args, "--json")
    assert first.exit_code == 0, first.output
    body = json.loads(first.stdout)
    assert body["key_id"] == created["key_id"] and body["key"] != created["key"]
    assert body["replayed"] is False and "stops working" in first.stderr
    again = json.loads(invoke(config_path, *args, "--json").stdout)
    assert again["key"] == body["key"] and again["replayed"] is True
    text = invoke(config_path, "keys", "rotate", created["key_id"], "--grace", "0s")
    assert text.exit_code == 0 and "old key works until" in text.stdout
    superseded = invoke(config_path, *args)
    assert superseded.exit_code == 1
    assert superseded.stderr.startswith("error: this idempotency token's rotation")
    assert body["key"] not in superseded.output


def test_keys_list_expiring(config_path: Path) -> None:
    soon = json.loads(
        invoke(config_path, "keys", "create", "--app", "a", "--expires", "3d", "--json").stdout
    )
    invoke(config_path, "keys", "create", "--app", "b", "--expires", "30d")
    invoke(config_path, "keys", "create", "--app", "c")
    listed = json.loads(invoke(config_path, "keys", "list", "--expiring", "7d", "--json").stdout)
    assert [k["key_id"] for k in listed] == [soon["key_id"]]
    table = invoke(config_path, "keys", "list", "--expiring", "7d").stdout
    assert soon["key_id"] in table and len(table.splitlines()) == 2
    assert invoke(config_path, "keys", "list", "--expiring", "soon").exit_code == 2


def test_vault_rekey_rewraps_everything_and_is_repeatable(
    config_path: Path, tmp_path: Path
) -> None:
    assert invoke(config_path, "vault", "list").exit_code == 0  # creates the internal secrets
    CliRunner().invoke(
        cli,
        ["vault", "put", "upstream/east"],
        input="azure-key-value\n",
        env={"KEYGUARD_MASTER_KEY": None, "KEYGUARD_CONFIG": str(config_path)},
    )
    new_key = tmp_path / "master-2.key"
    new = create_master_key_file(new_key)
    result = invoke(config_path, "vault", "rekey", "--new-master-key-file", str(new_key))
    assert result.exit_code == 0, result.output
    assert f"under kek id {new.kek_id}" in result.stdout and "0 left" in result.stdout
    assert "keyguard vault rekey --finish" in result.stderr and "delete" in result.stderr
    # the window is open: the config's key file holds both keys, new first
    assert invoke(config_path, "vault", "list").exit_code == 0
    env = {"KEYGUARD_MASTER_KEY": new_key.read_text().strip()}
    listed = json.loads(invoke(config_path, "vault", "list", "--json", env=env).stdout)
    assert {s["kek_id"] for s in listed} == {new.kek_id}

    async def read() -> str:
        async with runtime(load_settings(config_path), env) as rt:
            return await rt.vault.get("upstream/east")

    assert asyncio.run(read()) == "azure-key-value"
    repeated = invoke(config_path, "vault", "rekey", "--new-master-key-file", str(new_key))
    assert repeated.exit_code == 0 and "re-wrapped 0 secret versions" in repeated.stdout
    again = invoke(config_path, "vault", "rekey", "--new-master-key-file", str(new_key), env=env)
    assert again.exit_code == 1 and "is the current one" in again.stderr
    assert invoke(config_path, "vault", "rekey", env=env).exit_code == 2  # env: the new key?
    assert invoke(config_path, "vault", "rekey", "--finish").exit_code == 0
    assert load_master_key({}, str(tmp_path / "master.key")).kek_id == new.kek_id


async def test_rotate_upstream_and_status(tmp_path: Path, azure_emulator: AzureEmulator) -> None:
    config = write_config(tmp_path, rotation_settings(tmp_path, azure_emulator))
    old1, _ = azure_emulator.keys()
    put = await asyncio.to_thread(
        lambda: CliRunner().invoke(
            cli,
            ["vault", "put", "upstream/east", "-c", str(config)],
            input=old1,
            env={"KEYGUARD_MASTER_KEY": None},
        )
    )
    assert put.exit_code == 0, put.output
    done = await asyncio.to_thread(invoke, config, "rotate", "upstream", "east")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("rotated upstream east: now serving key2 (vault version 2)")
    assert await data_plane_status(azure_emulator.http_url, old1) == 401
    status = await asyncio.to_thread(invoke, config, "rotate", "status", "--json")
    rows = json.loads(status.stdout)
    assert [(r["upstream"], r["state"], r["from_slot"], r["to_slot"]) for r in rows] == [
        ("east", "done", "key1", "key2")
    ]
    assert rows[0]["trigger"].startswith("manual:")
    table = await asyncio.to_thread(invoke, config, "rotate", "status")
    assert "east" in table.stdout and "key1->key2" in table.stdout
    for output in (done.output, status.output, table.output):
        assert old1 not in output and azure_emulator.keys()[1] not in output
    unknown = await asyncio.to_thread(invoke, config, "rotate", "upstream", "west")
    assert unknown.exit_code == 1 and "no upstream named 'west'" in unknown.stderr


def test_rotate_needs_management_settings(config_path: Path) -> None:
    config_path.write_text(
        config_path.read_text()
        + yaml.safe_dump(
            {
                "upstreams": [
                    {
                        "name": "east",
                        "endpoint": "https://east.openai.azure.com",
                        "credential": {"vault": "upstream/east"},
                        "deployments": ["gpt-4o"],
                    }
                ]
            }
        )
    )
    result = invoke(config_path, "rotate", "upstream", "east")
    assert result.exit_code == 1 and "add 'management'" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["rotate"],
        ["rotate", "upstream"],
        ["rotate", "status"],
        ["keys", "rotate"],
        ["vault", "rekey"],
    ],
)
def test_help_has_examples(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0 and "Examples:" in result.stdout
