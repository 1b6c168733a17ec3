"""Keyguard's store: keys and sealed vault secrets in SQLite or PostgreSQL.

``await open_store(url)`` picks the backend from the URL scheme, opens an async engine, brings the
schema to the latest Alembic revision (the migrations ship inside this package) and returns a
:class:`~keyguard.store.base.Store`::

    store = await open_store("sqlite:///var/lib/keyguard/keyguard.db")
    store = await open_store("postgresql://keyguard@db.internal/keyguard?sslmode=require")

SQLite runs in WAL mode with a busy timeout and foreign keys on; its directory and file are created
owner-only. Concurrent openers are serialized while migrating (``BEGIN IMMEDIATE`` on SQLite, an
advisory lock on PostgreSQL).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import URL, Connection, event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..errors import ConfigurationError, StorageError
from .base import KeyRecord, KeyStore, SealedSecret, SecretInfo, Store, VaultStore
from .sql import SQLStore, translate_errors

__all__ = [
    "open_store",
    "migrate",
    "SQLStore",
    "Store",
    "KeyStore",
    "VaultStore",
    "KeyRecord",
    "SealedSecret",
    "SecretInfo",
]

MIGRATIONS = "keyguard.store:migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000
_PG_MIGRATION_LOCK = 0x6B6579677561  # "keygua": pg_advisory_xact_lock id for migrations
_BEGIN_OPTION = "keyguard_sqlite_begin"


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _sqlite_on_begin): the sqlite3 module's legacy
    # transaction handling skips BEGIN before SELECT and DDL.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def _create_owner_only(database: str) -> None:
    path = Path(database)
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _sqlite_engine(url: URL) -> AsyncEngine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            _create_owner_only(database)
        except OSError as exc:
            raise StorageError(
                f"store: cannot create the SQLite database {database!r}: {exc.strerror}"
            ) from exc
    engine = create_async_engine(url.set(drivername="sqlite+aiosqlite"))
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _postgres_engine(url: URL) -> AsyncEngine:
    url = url.set(drivername="postgresql+asyncpg")
    if "sslmode" in url.query:  # libpq spelling; asyncpg calls it ssl
        mode = url.query["sslmode"]
        url = url.difference_update_query(["sslmode"]).update_query_dict({"ssl": mode})
    return create_async_engine(url, pool_pre_ping=True, connect_args={"timeout": 10})


# Backends by URL scheme. One SQL implementation serves both; the engine differs.
BACKENDS: dict[str, Callable[[URL], AsyncEngine]] = {
    "sqlite": _sqlite_engine,
    "postgresql": _postgres_engine,
    "postgres": _postgres_engine,
}


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the latest revision, in one transaction."""
    try:
        async with translate_errors("migrate schema"), engine.connect() as conn:
            conn = await conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
            async with conn.begin():
                await conn.run_sync(_upgrade)
    except CommandError as exc:
        raise StorageError(
            f"store: cannot migrate the schema ({exc}); was it written by a newer Keyguard?"
        ) from exc


async def open_store(url: str) -> Store:
    """Open the store at ``url`` (``sqlite:///PATH`` or ``postgresql://...``), migrated to head.

    Raises :class:`ConfigurationError` for an unknown or malformed URL and
    :class:`StorageError` when the database cannot be reached or migrated.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            "store: not a database URL; use sqlite:///PATH or postgresql://USER@HOST/DB"
        ) from None
    factory = BACKENDS.get(parsed.drivername)
    if factory is None:
        raise ConfigurationError(
            f"store: unknown URL scheme {parsed.drivername!r}; "
            f"use one of {', '.join(sorted(BACKENDS))} (sqlite:///PATH, postgresql://...)"
        )
    display = parsed.render_as_string(hide_password=True)
    engine = factory(parsed)
    try:
        await migrate(engine)
    except StorageError as exc:
        await engine.dispose()
        raise StorageError(f"cannot open store {display}: {exc}") from exc.__cause__
    except BaseException:
        await engine.dispose()
        raise
    return SQLStore(engine, display_url=display)
