"""Fixtures for rotation tests: the store on every backend, a Keyguard runtime, settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keyguard.rotation.store import RotationStore
from keyguard.store import Store
from keyguard.wiring.runtime import Runtime, open_runtime
from tests.rotation.rotation_helpers import keyguard_settings


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
