"""Fixtures for rotation tests: the store on every backend, a Keyguard runtime, settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from keyguard.config import settings_from_mapping
from keyguard.rotation.store import RotationStore
from keyguard.runtime import Runtime, open_runtime
from keyguard.store import Store, open_store
from keyguard.vault.master import create_master_key_file


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


def keyguard_settings(tmp_path: Path, **extra: Any) -> Any:
    if not (tmp_path / "master.key").exists():
        create_master_key_file(tmp_path / "master.key")
    return settings_from_mapping(
        {
            "store": f"sqlite:///{tmp_path / 'keyguard.db'}",
            "master_key_file": str(tmp_path / "master.key"),
            **extra,
        }
    )


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = await open_runtime(keyguard_settings(tmp_path), {})
    try:
        yield rt
    finally:
        await rt.close()
