"""What the rotation tests share: settings for an upstream ``east`` whose keys the emulator's
ARM endpoints rotate, fast rotation timings, and a counting key manager."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from keyguard.config import Settings
from keyguard.rotation.azure import ArmKeyManager, KeyManager
from keyguard.rotation.machine import Slot
from keyguard.upstream.settings import ManagementSettings
from tests.support.emulators import AzureEmulator
from tests.support.settings import keyguard_settings, managed_upstream

FAST_ROTATION = {
    "credential_refresh_s": 0.2,
    "drain": 0.05,
    "verify_backoff": 0.01,
    "switch_timeout": 30,
    "check_interval": 3600,
}
VAULT = {"vault": "upstream/east"}


def rotation_settings(
    tmp: Path,
    emulator: AzureEmulator,
    credential: dict[str, Any] = VAULT,
    management: dict[str, Any] | None = None,
    **rotation: Any,
) -> Settings:
    """Settings with the one upstream ``east`` (its key read through ``credential``, its
    ``management`` section extended by ``management``) and :data:`FAST_ROTATION`
    (overridden by ``rotation``)."""
    return keyguard_settings(
        tmp,
        upstreams=[managed_upstream(emulator, credential, name="east", **(management or {}))],
        rotation={**FAST_ROTATION, **rotation},
    )


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
