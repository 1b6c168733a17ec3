"""``keyguard admin ...`` and ``keyguard policy ...`` through click's CliRunner."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from keyguard.cli.main import cli
from keyguard.config import load_settings
from keyguard.events import AdminAction
from keyguard.keys.admin_tokens import parse_token
from keyguard.wiring.access import open_admin_service
from keyguard.wiring.runtime import runtime
from tests.support.settings import keyguard_config, upstream, write_config

ENV = {"KEYGUARD_MASTER_KEY": None}
POLICY = """
roles:
  chat: {operations: [chat], deployments: [gpt-4o-mini], max_output_tokens: 100}
  unused: {operations: [embeddings], deployments: [e]}
bindings:
  - {name: billing, role: chat, subjects: ["app:billing"]}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config file with relative paths, one upstream and a managed policy from a file."""
    mapping = keyguard_config(
        tmp_path,
        store="sqlite:///state/keyguard.db",
        master_key_file="master.key",
        upstreams=[
            upstream("https://x.openai.azure.com", name="e", deployments=["gpt-4o-mini", "gpt-4o"])
        ],
        access={"policy": {"managed": True}},
        policy=POLICY,
    )
    return write_config(tmp_path, mapping)


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args], env={**ENV, "KEYGUARD_CONFIG": str(config)})


def test_admin_tokens(config: Path) -> None:
    created = invoke(config, "admin", "tokens", "create", "--role", "operator", "--name", "alice")
    assert created.exit_code == 0, created.output
    lines = dict(line.split(":", 1) for line in created.stdout.splitlines())
    token = lines["token"].strip()
    token_id = parse_token(token)
    assert token_id == lines["token id"].strip() and "cannot be shown again" in created.stderr
    as_json = invoke(
        config,
        "admin",
        "tokens",
        "create",
        "--role",
        "viewer",
        "--name",
        "g",
        "--expires",
        "1d",
        "--json",
    )
    assert json.loads(as_json.stdout)["expires_at"]
    listed = invoke(config, "admin", "tokens", "list")
    assert token_id in listed.stdout and token not in listed.stdout and "operator" in listed.stdout
    assert invoke(config, "admin", "tokens", "revoke", token_id).exit_code == 0
    rows = json.loads(invoke(config, "admin", "tokens", "list", "--json").stdout)
    assert {r["token_id"]: r["state"] for r in rows}[token_id] == "revoked"
    missing = invoke(config, "admin", "tokens", "revoke", "AAAAAAAAAAAA")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: no admin token")
    assert (
        invoke(config, "admin", "tokens", "create", "--role", "root", "--name", "x").exit_code == 2
    )


def test_admin_openapi(config: Path) -> None:
    result = invoke(config, "admin", "openapi")
    assert result.exit_code == 0, result.output
    assert "/admin/policy/explain" in json.loads(result.stdout)["paths"]


def test_admin_openapi_needs_no_config(tmp_path: Path) -> None:
    """The description is fixed for a version: printed in an empty folder, with no config
    file and no KEYGUARD_CONFIG (nor any other KEYGUARD_ variable) in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGUARD_")}
    result = subprocess.run(
        [sys.executable, "-m", "keyguard", "admin", "openapi"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "/admin/policy/explain" in json.loads(result.stdout)["paths"]
    assert list(tmp_path.iterdir()) == []  # nothing created either (no store, no key)


def test_policy_check(config: Path, tmp_path: Path) -> None:
    ok = invoke(config, "policy", "check", str(tmp_path / "policy.yaml"), "-c", str(config))
    assert ok.exit_code == 0 and "valid (2 roles, 1 bindings, 1 warnings)" in ok.stdout
    assert "roles.unused: no binding uses this role" in ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("bindings: [{name: b, role: r, subjects: ['team:x']}]\n")
    result = invoke(config, "policy", "check", str(bad))
    assert result.exit_code == 1
    assert "bindings.0.subjects: subject 'team:x' must be KIND:VALUE" in result.stderr
    (tmp_path / "dangling.yaml").write_text("bindings: [{name: b, role: r, subjects: ['app:x']}]\n")
    result = invoke(config, "policy", "check", str(tmp_path / "dangling.yaml"))
    assert result.exit_code == 1 and "role 'r' is not defined" in result.stderr
    as_json = json.loads(invoke(config, "policy", "check", str(bad), "--json").stdout)
    assert not as_json["valid"] and len(as_json["problems"]) >= 1


def test_policy_explain_from_a_file(config: Path, tmp_path: Path) -> None:
    policy = str(tmp_path / "policy.yaml")
    allowed = invoke(
        config,
        "policy",
        "explain",
        "-f",
        policy,
        "-p",
        "app:billing",
        "-r",
        "chat gpt-4o-mini max_tokens=50",
    )
    assert allowed.exit_code == 0, allowed.output
    assert allowed.stdout.startswith("ALLOWED for app:billing by binding billing (role chat)")
    denied = invoke(
        config,
        "policy",
        "explain",
        "-f",
        policy,
        "-p",
        "app:billing",
        "-r",
        "chat gpt-4o-mini max_tokens=500",
        "--json",
    )
    result = json.loads(denied.stdout)
    assert result["code"] == "MaxTokensAboveRoleLimit" and result["binding"] == "billing"
    text = invoke(config, "policy", "explain", "-f", policy, "-p", "app:billing", "-r", "images x")
    assert "DENIED for app:billing: OperationNotAllowed" in text.stdout
    assert "the caller sees:" in text.stdout
    bad = invoke(config, "policy", "explain", "-f", policy, "-p", "app:billing", "-r", "fly")
    assert bad.exit_code == 1 and bad.stderr.startswith("error: operation must be one of")


def test_policy_apply_show_and_explain_keys(config: Path, tmp_path: Path) -> None:
    managed = tmp_path / "managed.yaml"
    managed.write_text(
        "roles:\n  embed: {operations: [embeddings], deployments: ['*']}\n"
        "bindings:\n  - {name: search, role: embed, subjects: ['app:search']}\n"
    )
    applied = invoke(config, "policy", "apply", str(managed))
    assert applied.exit_code == 0, applied.output
    assert applied.stdout.strip() == "managed policy is now version 1"
    shown = json.loads(invoke(config, "policy", "show").stdout)
    assert [b["name"] for b in shown["effective"]["bindings"]] == ["billing", "search"]
    stale = invoke(config, "policy", "apply", str(managed), "--expected-version", "0")
    assert stale.exit_code == 1 and "version 1, not 0" in stale.stderr
    (tmp_path / "clash.yaml").write_text("roles: {chat: {operations: [chat], deployments: [x]}}\n")
    clash = invoke(config, "policy", "apply", str(tmp_path / "clash.yaml"))
    assert clash.exit_code == 1 and "policy file" in clash.stderr

    async def make_key() -> str:
        async with runtime(load_settings(config), {}) as rt:
            from datetime import UTC, datetime

            return (await rt.keys.create("search", now=datetime.now(UTC)))[0].key_id

    key_id = asyncio.run(make_key())
    explained = invoke(
        config,
        "policy",
        "explain",
        "-p",
        f"key:{key_id}",
        "-r",
        "embeddings text-embedding-3-small",
        "--json",
    )
    result = json.loads(explained.stdout)
    assert result["allowed"] and result["binding"] == "search"
    assert result["subjects"] == [f"key:{key_id}", "app:search"]


async def test_cli_actions_are_recorded_with_the_actor(config: Path) -> None:
    async with runtime(load_settings(config), {}) as rt:
        events: list[object] = []
        rt.events.subscribe(events.append)
        service = await open_admin_service(rt)
        from keyguard.cli.support import cli_actor

        await service.create_admin_token(cli_actor(), name="n", role="viewer")
        await service.explain(cli_actor(), "app:billing", "chat gpt-4o-mini max_tokens=1")
    recorded = [e for e in events if isinstance(e, AdminAction)]
    assert [e.action for e in recorded] == ["admin_tokens.create", "policy.explain"]
    assert all(e.actor.startswith("cli:") for e in recorded)
