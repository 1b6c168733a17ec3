"""Admin actions taken through the CLI land in the audit log, without secrets."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from keyguard.cli.main import cli


def test_key_create_and_revoke_are_audited(config_path: Path) -> None:
    runner = CliRunner()
    created = runner.invoke(
        cli, ["keys", "create", "--app", "billing-bot", "--json", "-c", str(config_path)]
    )
    assert created.exit_code == 0, created.output
    key = json.loads(created.stdout)
    revoked = runner.invoke(cli, ["keys", "revoke", key["key_id"], "-c", str(config_path)])
    assert revoked.exit_code == 0, revoked.output

    exported = runner.invoke(cli, ["audit", "export", "-c", str(config_path)])
    assert exported.exit_code == 0, exported.output
    records = [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]
    actions = [
        (r["data"]["action"], r["data"]["target"]) for r in records if r.get("kind") == "admin"
    ]
    assert ("keys.create", f"key:{key['key_id']}") in actions
    assert ("keys.revoke", f"key:{key['key_id']}") in actions
    assert key["key"] not in exported.stdout
    verified = runner.invoke(cli, ["audit", "verify", "-c", str(config_path)])
    assert verified.exit_code == 0, verified.output
