"""``keyguard scan --config ... --respond``: a leaked managed key is matched by fingerprint and
the gateway's response is carried out (a leaked Keyguard key is revoked)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from keyguard.azure_keys import generate_identifiable_key
from keyguard.cli.scan import scan_command
from keyguard.config import load_settings
from keyguard.keys.service import key_state
from keyguard.wiring.runtime import runtime
from tests.support.settings import keyguard_config, upstream, write_config


def _config(tmp_path: Path) -> Path:
    east = upstream("https://east.openai.azure.com", name="east", deployments=["gpt-4o"])
    return write_config(tmp_path, keyguard_config(tmp_path, upstreams=[east]))


async def _setup(config: Path, upstream_key: str) -> tuple[str, str, str]:
    async with runtime(load_settings(config), {}) as rt:
        await rt.vault.put("upstream/east", upstream_key)
        leaked, leaked_key = await rt.keys.create("billing-bot", now=datetime.now(UTC))
        kept, _ = await rt.keys.create("billing-bot", now=datetime.now(UTC))
        return leaked.key_id, leaked_key, kept.key_id


async def _stored_fingerprint(config: Path) -> str:
    async with runtime(load_settings(config), {}) as rt:
        sealed = await rt.store.get_secret("upstream/east")
        assert sealed is not None
        return sealed.fingerprint


async def _states(config: Path, *key_ids: str) -> list[str]:
    async with runtime(load_settings(config), {}) as rt:
        now = datetime.now(UTC)
        return [key_state(await rt.keys.get(k), now) for k in key_ids]


def test_leaked_keyguard_key_is_revoked_and_upstream_key_matched(tmp_path: Path) -> None:
    config = _config(tmp_path)
    upstream_key = generate_identifiable_key()
    leaked_id, leaked_key, kept_id = asyncio.run(_setup(config, upstream_key))
    code = tmp_path / "repo"
    code.mkdir()
    (code / "app.py").write_text(f'KEYGUARD_KEY = "{leaked_key}"\n')
    (code / "settings.env").write_text(f"AZURE_OPENAI_API_KEY={upstream_key}\n")

    runner = CliRunner()
    plain = runner.invoke(scan_command, ["--config", str(config), "--format", "jsonl", str(code)])
    assert plain.exit_code == 1, plain.output
    findings = [json.loads(line) for line in plain.stdout.splitlines() if line.strip()]
    assert {f["file"] for f in findings} == {"app.py", "settings.env"}
    assert leaked_key not in plain.output and upstream_key not in plain.output
    assert asyncio.run(_states(config, leaked_id, kept_id)) == ["active", "active"]
    by_file = {f["file"]: f["fingerprint"] for f in findings}
    assert by_file["settings.env"] == asyncio.run(_stored_fingerprint(config))

    result = runner.invoke(
        scan_command,
        ["--config", str(config), "--respond", "--format", "jsonl", str(code / "app.py")],
    )
    assert result.exit_code == 1, result.output
    assert f"revoke_keyguard_key {leaked_id}" in result.stderr
    assert asyncio.run(_states(config, leaked_id, kept_id)) == ["revoked", "active"]
