"""The SQL store: one implementation of :class:`keyguard.store.base.Store` for SQLite and
PostgreSQL, on SQLAlchemy's async Core, and the engine set-up and migrations for both.

Each method is one short transaction. Writes go through :func:`write_transaction`: on SQLite
it takes the file's write lock when the transaction begins (``BEGIN IMMEDIATE``), after the
writers of this process that asked before it (a FIFO queue on the engine), so two writers wait
their turn instead of failing. A deferred transaction that reads and then writes cannot wait:
SQLite answers "database is locked" at once when another connection holds the write lock, or
wrote since the read, and never calls the busy handler for that upgrade. Reads take no lock
(``engine.connect()``; WAL readers never block a writer). No write transaction spans anything
but its own statements: no network, vault or upstream call runs while one is open.

Driver errors are translated into
:class:`~keyguard.errors.StorageError` by :func:`translate_errors`; the message names the
operation and the driver's own error, never SQL text or parameters (which may hold digests or
ciphertext). For the same reason the SQLite driver's own logger (``aiosqlite``, every statement
with its parameters at DEBUG) is kept at INFO whatever the log level.

SQLite runs in WAL mode (set once per file, before the engine opens it, retried while another
opener holds a new file) with a busy timeout and foreign keys on; its directory and file are
created owner-only. Concurrent openers are serialized while migrating (``BEGIN IMMEDIATE`` on
SQLite, a transaction-scoped advisory lock on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import URL, Connection, Engine, RowMapping, and_, event, func, make_url, select
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..errors import ConfigurationError, StorageError
from .base import KeyRecord, SealedSecret, SecretInfo
from .schema import keys, vault_secrets

__all__ = [
    "SQLStore",
    "open_sql_store",
    "write_transaction",
    "create_engine",
    "migrate",
    "translate_errors",
    "sqlite_file",
]

MIGRATIONS = "keyguard.store:migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000
logging.getLogger("aiosqlite").setLevel(logging.INFO)  # its DEBUG quotes SQL parameters
_PG_MIGRATION_LOCK = 0x6B6579677561  # "keygua": pg_advisory_xact_lock id for migrations
_BEGIN_OPTION = "keyguard_sqlite_begin"


def _describe(exc: BaseException) -> str:
    """A one-line description of a driver error, without SQL text or parameters."""
    inner: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        inner = exc.orig
    elif isinstance(exc, SQLAlchemyError) and exc.__cause__ is not None:
        inner = exc.__cause__
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    if isinstance(inner, SQLAlchemyError):
        # SQLAlchemy's own messages can quote statements; keep only the class name.
        text = ""
    name = type(inner).__name__
    return f"{name}: {text[:200]}" if text else name


@asynccontextmanager
async def translate_errors(action: str) -> AsyncIterator[None]:
    """Turn driver and connection errors raised inside the block into ``StorageError``."""
    try:
        yield
    except StorageError:
        raise
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise StorageError(f"store: {action} failed ({_describe(exc)})") from exc


class _WriteQueue:
    """The SQLite writers of one engine in one event loop, in arrival order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = asyncio.Lock()


_WRITE_QUEUES: weakref.WeakKeyDictionary[Engine, _WriteQueue] = weakref.WeakKeyDictionary()


def _write_queue(engine: AsyncEngine) -> _WriteQueue:
    loop = asyncio.get_running_loop()
    queue = _WRITE_QUEUES.get(engine.sync_engine)
    if queue is None or queue.loop is not loop:  # an engine used from a new loop (tests, CLI)
        queue = _WRITE_QUEUES[engine.sync_engine] = _WriteQueue(loop)
    return queue


@asynccontextmanager
async def write_transaction(engine: AsyncEngine, action: str) -> AsyncIterator[AsyncConnection]:
    """One short write transaction on ``engine``, committed at the end of the block (rolled
    back on an error), driver errors translated as ``store: ACTION failed (...)``.

    On SQLite the writers of this process queue (FIFO) and each begins ``IMMEDIATE``: the
    write lock is taken before the first statement, waiting up to the busy timeout for another
    process's writer, so a transaction that reads and then writes never fails half-way. The
    wait in the queue is bounded by the same timeout. Nothing but the transaction's own
    statements may run inside the block (no network, vault or upstream call).
    """
    async with translate_errors(action):
        if engine.dialect.name != "sqlite":
            async with engine.begin() as conn:
                yield conn
            return
        queue = _write_queue(engine)
        try:
            async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_MS / 1000):
                await queue.lock.acquire()
        except TimeoutError:
            raise StorageError(
                f"store: {action} failed (this process's earlier writes held the store for "
                f"over {SQLITE_BUSY_TIMEOUT_MS / 1000:g} s)"
            ) from None
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
                async with conn.begin():
                    yield conn
        finally:
            queue.lock.release()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _sqlite_on_begin): the sqlite3 module's legacy
    # transaction handling skips BEGIN before SELECT and DDL.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")  # already set by _ensure_wal: no lock needed
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def sqlite_file(url: URL) -> str | None:
    """The database file of a SQLite URL; ``None`` for an in-memory or URI-style database."""
    if not url.drivername.startswith("sqlite"):
        return None
    name = url.database
    if not name or name == ":memory:" or name.startswith("file:") or url.query:
        return None
    return name


def _ensure_wal(database: str) -> None:
    """Put a SQLite file in WAL mode before the engine opens it (blocking: run in a thread).

    The mode is kept in the file, so only a new store changes it, and the change needs the file
    to itself: SQLite answers "database is locked" at once, without waiting for its busy
    timeout, when another connection holds it (two processes opening one new store at the same
    moment). Retried here for up to that timeout; every later connection finds WAL already set.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    conn = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)
    finally:
        conn.close()


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
    engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _postgres_engine(url: URL) -> AsyncEngine:
    if "sslmode" in url.query:  # libpq spelling; asyncpg calls it ssl
        mode = url.query["sslmode"]
        url = url.difference_update_query(["sslmode"]).update_query_dict({"ssl": mode})
    return create_async_engine(url, pool_pre_ping=True, connect_args={"timeout": 10})


def create_engine(url: str, driver: str) -> AsyncEngine:
    """An async engine for ``url`` using the SQLAlchemy ``driver`` (``sqlite+aiosqlite``, ...)."""
    try:
        parsed = make_url(url).set(drivername=driver)
    except ArgumentError:
        raise ConfigurationError(
            "store: not a database URL; use sqlite:///PATH or postgresql://USER@HOST/DB"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return _postgres_engine(parsed)


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    command.upgrade(config, "heads")  # capabilities may add migration branches


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


async def open_sql_store(url: str, driver: str) -> SQLStore:
    """Open and migrate the database at ``url`` with ``driver`` (see :func:`open_store`)."""
    engine = create_engine(url, driver)
    display = make_url(url).render_as_string(hide_password=True)
    try:
        database = sqlite_file(engine.url)
        if database is not None:
            try:
                await asyncio.to_thread(_ensure_wal, database)
            except sqlite3.Error as exc:
                raise StorageError(f"store: cannot set WAL mode ({exc})") from exc
        await migrate(engine)
    except StorageError as exc:
        await engine.dispose()
        cause = exc.__cause__
        if cause is None or isinstance(cause, CommandError):
            reason = str(exc).removeprefix("store: ")
        else:
            reason = _describe(cause)
        raise StorageError(f"cannot open store {display}: {reason}") from cause
    except BaseException:
        await engine.dispose()
        raise
    return SQLStore(engine, display_url=display)


def _key_record(row: RowMapping) -> KeyRecord:
    return KeyRecord(
        key_id=row["key_id"],
        app=row["app"],
        digest=row["digest"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        description=row["description"],
        previous_digest=row["previous_digest"],
        previous_valid_until=row["previous_valid_until"],
        suspended_at=row["suspended_at"],
        fingerprint=row["fingerprint"],
    )


def _sealed(row: RowMapping) -> SealedSecret:
    return SealedSecret(
        name=row["name"],
        version=row["version"],
        kek_id=row["kek_id"],
        wrapped_dek=bytes(row["wrapped_dek"]),
        dek_nonce=bytes(row["dek_nonce"]),
        value_nonce=bytes(row["value_nonce"]),
        ciphertext=bytes(row["ciphertext"]),
        fingerprint=row["fingerprint"],
        created_at=row["created_at"],
    )


class SQLStore:
    """Keys and sealed vault secrets in SQL tables (see :mod:`keyguard.store.schema`)."""

    def __init__(self, engine: AsyncEngine, *, display_url: str) -> None:
        self._engine = engine
        self.display_url = display_url  # password hidden; safe for logs and errors

    def __repr__(self) -> str:
        return f"SQLStore({self.display_url!r})"

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @asynccontextmanager
    async def _read(self, action: str) -> AsyncIterator[AsyncConnection]:
        async with translate_errors(action), self._engine.connect() as conn:
            yield conn

    def _write(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]:
        return write_transaction(self._engine, action)

    # -- keys ---------------------------------------------------------------------------

    async def create_key(self, record: KeyRecord) -> None:
        try:
            async with self._write("create key") as conn:
                await conn.execute(keys.insert().values(**asdict(record)))
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise StorageError(f"store: key id {record.key_id} already exists") from exc
            raise

    async def get_key(self, key_id: str) -> KeyRecord | None:
        async with self._read("get key") as conn:
            row = (await conn.execute(select(keys).where(keys.c.key_id == key_id))).first()
        return None if row is None else _key_record(row._mapping)

    async def list_keys(
        self, *, app: str | None = None, include_revoked: bool = False
    ) -> list[KeyRecord]:
        query = select(keys).order_by(keys.c.created_at, keys.c.key_id)
        if app is not None:
            query = query.where(keys.c.app == app)
        if not include_revoked:
            query = query.where(keys.c.revoked_at.is_(None))
        async with self._read("list keys") as conn:
            rows = (await conn.execute(query)).all()
        return [_key_record(r._mapping) for r in rows]

    async def revoke_key(self, key_id: str, at: datetime) -> KeyRecord | None:
        async with self._write("revoke key") as conn:
            await conn.execute(
                keys.update()
                .where(and_(keys.c.key_id == key_id, keys.c.revoked_at.is_(None)))
                .values(revoked_at=at, updated_at=at)
            )
            row = (await conn.execute(select(keys).where(keys.c.key_id == key_id))).first()
        return None if row is None else _key_record(row._mapping)

    async def keys_changed_since(self, since: datetime) -> list[KeyRecord]:
        query = (
            select(keys).where(keys.c.updated_at > since).order_by(keys.c.updated_at, keys.c.key_id)
        )
        async with self._read("list changed keys") as conn:
            rows = (await conn.execute(query)).all()
        return [_key_record(r._mapping) for r in rows]

    async def replace_key(self, record: KeyRecord, *, expected_updated_at: datetime) -> bool:
        values = asdict(record)
        for fixed in ("key_id", "app", "created_at"):
            del values[fixed]
        async with self._write("update key") as conn:
            result = await conn.execute(
                keys.update()
                .where(
                    and_(
                        keys.c.key_id == record.key_id,
                        keys.c.updated_at == expected_updated_at,
                    )
                )
                .values(**values)
            )
        return bool(result.rowcount == 1)

    # -- vault --------------------------------------------------------------------------

    async def put_secret(self, secret: SealedSecret) -> None:
        if secret.version < 1:
            raise StorageError(f"store: secret {secret.name} version must be 1 or more")
        try:
            async with self._write("put secret") as conn:
                await conn.execute(vault_secrets.insert().values(**asdict(secret)))
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise StorageError(
                    f"store: secret {secret.name} version {secret.version} already exists "
                    "(written concurrently?)"
                ) from exc
            raise

    async def get_secret(self, name: str, version: int | None = None) -> SealedSecret | None:
        query = select(vault_secrets).where(vault_secrets.c.name == name)
        if version is None:
            query = query.order_by(vault_secrets.c.version.desc()).limit(1)
        else:
            query = query.where(vault_secrets.c.version == version)
        async with self._read("get secret") as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _sealed(row._mapping)

    async def list_secrets(self) -> list[SecretInfo]:
        latest = (
            select(vault_secrets.c.name, func.max(vault_secrets.c.version).label("version"))
            .group_by(vault_secrets.c.name)
            .subquery()
        )
        query = (
            select(
                vault_secrets.c.name,
                vault_secrets.c.version,
                vault_secrets.c.kek_id,
                vault_secrets.c.created_at,
            )
            .join(
                latest,
                and_(
                    vault_secrets.c.name == latest.c.name,
                    vault_secrets.c.version == latest.c.version,
                ),
            )
            .order_by(vault_secrets.c.name)
        )
        async with self._read("list secrets") as conn:
            rows = (await conn.execute(query)).all()
        return [
            SecretInfo(name=r.name, version=r.version, kek_id=r.kek_id, created_at=r.created_at)
            for r in rows
        ]

    async def sealed_versions(self, kek_id: str) -> list[SealedSecret]:
        query = (
            select(vault_secrets)
            .where(vault_secrets.c.kek_id == kek_id)
            .order_by(vault_secrets.c.name, vault_secrets.c.version)
        )
        async with self._read("list sealed versions") as conn:
            rows = (await conn.execute(query)).all()
        return [_sealed(r._mapping) for r in rows]

    async def replace_wrapping(self, secret: SealedSecret, *, expected_kek_id: str) -> bool:
        row = vault_secrets.c
        async with self._write("re-wrap secret") as conn:
            result = await conn.execute(
                vault_secrets.update()
                .where(
                    and_(
                        row.name == secret.name,
                        row.version == secret.version,
                        row.kek_id == expected_kek_id,
                    )
                )
                .values(
                    kek_id=secret.kek_id,
                    wrapped_dek=secret.wrapped_dek,
                    dek_nonce=secret.dek_nonce,
                )
            )
        return bool(result.rowcount == 1)

    async def close(self) -> None:
        await self._engine.dispose()
