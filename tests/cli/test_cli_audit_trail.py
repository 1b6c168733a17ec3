"""Admin actions taken through the CLI land in the audit log, without secrets."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

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


async def test_archive_verify_and_restore_from_the_command_line(
    config_path: Path, tmp_path: Path
) -> None:
    import asyncio
    import time

    from keyguard.audit.settings import AuditSettings
    from keyguard.audit.signing import load_signer
    from keyguard.audit.store import AuditStore
    from keyguard.audit.writer import AuditWriter
    from keyguard.config import load_settings
    from keyguard.store import open_store
    from keyguard.wiring.runtime import open_runtime

    settings = load_settings(str(config_path))
    rt = await open_runtime(settings, {})
    try:
        signer = await load_signer(rt.vault)
    finally:
        await rt.close()
    store = await open_store(settings.store)
    old = time.time() - 40 * 86_400
    engine = store.engine  # type: ignore[attr-defined]
    writer = AuditWriter(AuditStore(engine), AuditSettings(), signer=signer, clock=lambda: old)
    writer.append("admin", {"action": "keys.create", "target": "key:old"})
    await writer.close()
    await store.close()

    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli, [*args, "-c", str(config_path)])

    folder = tmp_path / "archive"
    folder.mkdir()
    careless = await asyncio.to_thread(invoke, "audit", "archive", "--to", str(folder),
                                       "--older-than", "1h")  # fmt: skip
    assert careless.exit_code == 2 and "at least 2d" in careless.output
    moved = await asyncio.to_thread(invoke, "audit", "archive", "--to", str(folder))
    assert moved.exit_code == 0 and "archived 3 records" in moved.output, moved.output
    [archived] = list(folder.glob("*.jsonl.gz"))
    checked = await asyncio.to_thread(invoke, "audit", "verify", "--archive", str(folder))
    assert checked.exit_code == 0 and "ok:" in checked.output, checked.output
    intact = await asyncio.to_thread(invoke, "audit", "verify")
    assert intact.exit_code == 0 and "1 chain(s) archived" in intact.output, intact.output
    back = await asyncio.to_thread(invoke, "audit", "restore", str(archived))
    assert back.exit_code == 0 and "restored 3 records" in back.output, back.output
    assert (await asyncio.to_thread(invoke, "audit", "verify")).exit_code == 0
