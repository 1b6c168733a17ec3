"""The audit tables' engine on every backend (``engine``, from the shared ``store``; in a
SQLite file: ``sqlite_engine`` of tests/conftest.py)."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.store import Store


@pytest.fixture
def engine(store: Store) -> AsyncEngine:
    found: AsyncEngine = store.engine  # type: ignore[attr-defined]
    return found
