"""The console's session tables, in process and in the store, for the tests that run over both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.console.sessions import MemorySessions, Sessions
from keyguard.console.sql_sessions import SqlSessions


@pytest.fixture(params=["memory", "sql"])
async def sessions(
    request: pytest.FixtureRequest, sqlite_engine: AsyncEngine
) -> AsyncIterator[Callable[..., Sessions]]:
    def make(**bounds: Any) -> Sessions:
        if request.param == "memory":
            return MemorySessions(**bounds)
        return SqlSessions(sqlite_engine, **bounds)

    yield make
