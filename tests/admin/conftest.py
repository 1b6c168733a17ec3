"""Stores for the admin tests: SQLite (a temporary file) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keyguard.store import Store, open_store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'keyguard.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    opened = await open_store(url)
    try:
        yield opened
    finally:
        await opened.close()


# The local OIDC issuer and the upstream emulator of the identity tests.
from identity.conftest import issuer, upstream  # noqa: E402,F401
