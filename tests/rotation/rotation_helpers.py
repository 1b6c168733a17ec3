"""Helpers shared by the rotation tests: config for an emulated upstream, a counting key
manager, a data-plane probe."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from keyguard.config import Settings, settings_from_mapping
from keyguard.rotation.azure import ArmKeyManager, KeyManager
from keyguard.rotation.machine import Slot
from keyguard.upstream.settings import ManagementSettings
from keyguard.vault.master import create_master_key_file

CHAT = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"

FAST_ROTATION = {
    "credential_refresh_s": 0.2,
    "drain": 0.05,
    "verify_backoff": 0.01,
    "switch_timeout": 30,
    "check_interval": 3600,
}


def upstream_config(
    emulator: Any, credential: dict[str, Any], *, name: str = "east", **management: Any
) -> dict[str, Any]:
    c = emulator.state.config
    return {
        "name": name,
        "endpoint": emulator.http_url,
        "credential": credential,
        "deployments": ["gpt-4o", "gpt-4o-mini"],
        "management": {
            "subscription_id": c.subscription_id,
            "resource_group": c.resource_group,
            "account_name": c.account_name,
            "arm_endpoint": emulator.url,
            "identity": {"ca_file": emulator.ca_file},
            **management,
        },
    }


class CountingKeys:
    """The real ARM key manager, counting regenerations per slot."""

    def __init__(self, settings: ManagementSettings) -> None:
        self.inner: KeyManager = ArmKeyManager(settings)
        self.regenerated: Counter[str] = Counter()

    async def list_keys(self) -> tuple[str, str]:
        return await self.inner.list_keys()

    async def regenerate(self, slot: Slot) -> tuple[str, str]:
        self.regenerated[slot] += 1
        return await self.inner.regenerate(slot)

    async def close(self) -> None:
        await self.inner.close()


async def data_plane_status(emulator: Any, key: str) -> int:
    """Status of a chat call straight to the emulator with ``key``."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            emulator.http_url + CHAT,
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers={"api-key": key},
        ) as response,
    ):
        await response.read()
        return response.status


def keyguard_settings(tmp_path: Path, **extra: Any) -> Settings:
    if not (tmp_path / "master.key").exists():
        create_master_key_file(tmp_path / "master.key")
    return settings_from_mapping(
        {
            "store": f"sqlite:///{tmp_path / 'keyguard.db'}",
            "master_key_file": str(tmp_path / "master.key"),
            **extra,
        }
    )
