"""The vault tests run on a SQLite store (the store suite covers every backend)."""

from __future__ import annotations

import pytest

from keyguard.store import Store
from keyguard.vault.crypto import MasterKey
from keyguard.vault.vault import Vault

MASTER = MasterKey(bytes(range(32)))


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    return sqlite_store


@pytest.fixture
async def vault(store: Store) -> Vault:
    return await Vault.open(store, MASTER)
