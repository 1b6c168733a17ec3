"""Fixtures for rotation tests: the rotation store on every backend, a bare Keyguard runtime and
its key rotation ``service``, and a runtime ``rt`` whose upstream ``east`` the emulator's ARM
endpoints rotate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keyguard.rotation.keys import KeyRotationService
from keyguard.rotation.store import RotationStore
from keyguard.store import Store
from keyguard.wiring.rotation import key_rotation_service
from keyguard.wiring.runtime import Runtime, open_runtime
from tests.support.emulators import AzureEmulator
from tests.support.settings import keyguard_settings

from .rotation_helpers import rotation_settings


@pytest.fixture
def rotation_store(store: Store) -> RotationStore:
    return RotationStore.for_store(store)


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = await open_runtime(keyguard_settings(tmp_path), {})
    try:
        yield rt
    finally:
        await rt.close()


@pytest.fixture
async def service(runtime: Runtime) -> KeyRotationService:
    """Keyguard key rotation on ``runtime``, accepting a new key at once."""
    return await key_rotation_service(runtime, accept_delay_s=0)


@pytest.fixture
async def rt(tmp_path: Path, azure_emulator: AzureEmulator) -> AsyncIterator[Runtime]:
    """Upstream ``east`` with key1 in the local vault, rotated once its key is 30 days old;
    Keyguard keys warned about 7 days before they expire."""
    settings = rotation_settings(
        tmp_path, azure_emulator, management={"key_max_age": "30d"}, key_expiry_warning="7d"
    )
    opened = await open_runtime(settings, {})
    await opened.vault.put("upstream/east", azure_emulator.keys()[0])
    try:
        yield opened
    finally:
        await opened.close()
