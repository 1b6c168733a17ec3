"""Fixtures and hooks shared by every test package.

PostgreSQL
    ``postgres_url``       the URL of a reachable PostgreSQL server (``KEYGUARD_TEST_POSTGRES_URL``,
                           default below). Skips when the server cannot be reached, except when
                           ``CI=true``: then the test fails, so CI never passes by skipping.
    ``postgres_database``  a fresh, empty database on that server for one test (dropped
                           afterwards); its URL.

Mark tests that use them ``@pytest.mark.postgres``.

Redis
    ``redis_url``          a reachable Redis server (``KEYGUARD_TEST_REDIS_URL``, default below);
                           skips like ``postgres_url`` (fails when ``CI=true``).
    ``redis_prefix``       a unique key prefix for one test, its keys deleted afterwards.

Mark tests that use them ``@pytest.mark.redis``.

The store
    ``store_url``          a fresh store URL on each backend: SQLite, then PostgreSQL
    ``store``              an opened, migrated store on it
    ``sqlite_url``         a store URL in a temporary SQLite file only
    ``sqlite_store``       an opened, migrated store on it

Emulators, the local OIDC issuer, ``logs`` and ``config_path`` come from the plugin
tests/support/fixtures.py; the settings builder and the gateway from tests/support/.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.store import Store, open_store

pytest_plugins = ["pytester", "tests.support.fixtures"]

T = TypeVar("T")

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _run_in_thread(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on its own loop, away from the test's event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, factory()).result()


async def _probe_postgres(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("KEYGUARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        _run_in_thread(lambda: _probe_postgres(url))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        message = (
            f"PostgreSQL at {shown} is unreachable ({type(exc).__name__}: {exc}); "
            "start it or set KEYGUARD_TEST_POSTGRES_URL"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: PostgreSQL tests may not skip)", pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    name = f"keyguard_test_{secrets.token_hex(6)}"

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(postgres_url, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    _run_in_thread(lambda: execute(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        _run_in_thread(lambda: execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


async def _probe_redis(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis server (``KEYGUARD_TEST_REDIS_URL``); skips when unreachable, except
    in CI. Tests share it: each one uses its own key prefix (``redis_prefix``) and cleans up."""
    url = os.environ.get("KEYGUARD_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    try:
        _run_in_thread(lambda: _probe_redis(url))
    except Exception as exc:
        message = (
            f"Redis at {url} is unreachable ({type(exc).__name__}); "
            "start it or set KEYGUARD_TEST_REDIS_URL"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: Redis tests may not skip)", pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted afterwards."""
    prefix = f"kgtest:{secrets.token_hex(6)}:{{limits}}:"

    async def clean() -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(redis_url)
        try:
            keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    try:
        yield prefix
    finally:
        _run_in_thread(clean)


# -- the store on every backend ----------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL: a temporary SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'keyguard.db'}"
    url: str = request.getfixturevalue("postgres_database")
    return url


@asynccontextmanager
async def _opened(url: str) -> AsyncIterator[Store]:
    opened = await open_store(url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An opened, migrated store on each backend (see ``store_url``)."""
    async with _opened(store_url) as opened:
        yield opened


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a store in the SQLite file ``tmp_path/keyguard.db``."""
    return f"sqlite:///{tmp_path / 'keyguard.db'}"


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[Store]:
    """An opened, migrated store at ``sqlite_url`` (for tests of one backend)."""
    async with _opened(sqlite_url) as opened:
        yield opened


@pytest.fixture
def sqlite_engine(sqlite_store: Store) -> AsyncEngine:
    """The engine of ``sqlite_store`` (for tests of its tables)."""
    found: AsyncEngine = sqlite_store.engine  # type: ignore[attr-defined]
    return found


# In CI nothing may pass by skipping: a skipped test fails the run, with the list of skips.
_ci_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and os.environ.get("CI") == "true":
        _ci_skips.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _ci_skips:
        print(f"\nCI=true: {len(_ci_skips)} test(s) skipped, which CI does not allow:")
        for nodeid in _ci_skips:
            print(f"  {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
