"""Fixtures for rotation tests: the store on every backend, a Keyguard runtime, settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rotation_helpers import keyguard_settings

from keyguard.rotation.store import RotationStore
from keyguard.runtime import Runtime, open_runtime
from keyguard.store import Store, open_store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'keyguard.db'}"
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()


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
