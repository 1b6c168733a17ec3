"""The key service over a SQLite store (the store suite covers every backend)."""

from __future__ import annotations

import pytest

from keyguard.keys.service import KeyService
from keyguard.store import Store

PEPPER = b"p" * 32


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    return sqlite_store


@pytest.fixture
def service(store: Store) -> KeyService:
    return KeyService(store, PEPPER)
