"""open_runtime: master key first, then the store, the vault and the key service."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keyguard.config import load_settings
from keyguard.errors import ConfigurationError, VaultError
from keyguard.vault.vault import PEPPER
from keyguard.wiring.runtime import open_runtime, runtime

NOW = datetime(2025, 3, 1, tzinfo=UTC)


async def test_open_create_and_reopen(config_path: Path) -> None:
    settings = load_settings(config_path)
    async with runtime(settings, {}) as rt:
        record, full = await rt.keys.create("billing-bot", now=NOW)
        await rt.vault.put("upstream/east", "azure-key")
        pepper = await rt.vault.get_or_create_random(PEPPER)
    rt2 = await open_runtime(settings, {})
    try:
        assert rt2.settings is settings
        assert await rt2.vault.get_or_create_random(PEPPER) == pepper
        stored = await rt2.store.get_key(record.key_id)
        assert stored is not None and rt2.keys.verify(stored, full, datetime.now(UTC))
        assert await rt2.vault.get("upstream/east") == "azure-key"
    finally:
        await rt2.close()


async def test_missing_master_key_fails_before_touching_the_store(tmp_path: Path) -> None:
    path = tmp_path / "keyguard.yaml"
    path.write_text("store: sqlite:///state/keyguard.db\n")
    with pytest.raises(ConfigurationError, match="KEYGUARD_MASTER_KEY"):
        await open_runtime(load_settings(path), {})
    assert not (tmp_path / "state").exists()


async def test_wrong_master_key_is_reported_as_such(config_path: Path) -> None:
    settings = load_settings(config_path)
    async with runtime(settings, {}):
        pass
    other = {"KEYGUARD_MASTER_KEY": base64.urlsafe_b64encode(bytes(32)).decode()}
    with pytest.raises(VaultError, match="wrong master key"):
        await open_runtime(settings, other)
