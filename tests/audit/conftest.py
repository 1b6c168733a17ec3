"""The audit tables' engine: on every backend (``engine``, from the shared ``store``) or in a
SQLite file (``sqlite_engine``, from ``sqlite_store``)."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.store import Store


@pytest.fixture
def engine(store: Store) -> AsyncEngine:
    found: AsyncEngine = store.engine  # type: ignore[attr-defined]
    return found


@pytest.fixture
def sqlite_engine(sqlite_store: Store) -> AsyncEngine:
    found: AsyncEngine = sqlite_store.engine  # type: ignore[attr-defined]
    return found
