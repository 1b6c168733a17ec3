"""The SQL store: one implementation of :class:`keyguard.store.base.Store` for SQLite and
PostgreSQL, on SQLAlchemy's async Core.

Each method is one short transaction. Driver errors are translated into
:class:`~keyguard.errors.StorageError` by :func:`_errors`; the message names the operation and
the driver's own error, never SQL parameters (which may hold digests or ciphertext).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..errors import StorageError
from .base import KeyRecord, SealedSecret, SecretInfo
from .schema import keys, vault_secrets

__all__ = ["SQLStore", "translate_errors"]


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


def _key_record(row: Mapping[str, Any]) -> KeyRecord:
    return KeyRecord(
        key_id=row["key_id"],
        app=row["app"],
        digest=row["digest"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        description=row["description"],
    )


def _sealed(row: Mapping[str, Any]) -> SealedSecret:
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
    async def _tx(self, action: str) -> AsyncIterator[AsyncConnection]:
        async with translate_errors(action), self._engine.begin() as conn:
            yield conn

    # -- keys ---------------------------------------------------------------------------

    async def create_key(self, record: KeyRecord) -> None:
        try:
            async with self._tx("create key") as conn:
                await conn.execute(keys.insert().values(**asdict(record)))
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise StorageError(f"store: key id {record.key_id} already exists") from exc
            raise

    async def get_key(self, key_id: str) -> KeyRecord | None:
        async with self._tx("get key") as conn:
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
        async with self._tx("list keys") as conn:
            rows = (await conn.execute(query)).all()
        return [_key_record(r._mapping) for r in rows]

    async def revoke_key(self, key_id: str, at: datetime) -> KeyRecord | None:
        async with self._tx("revoke key") as conn:
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
        async with self._tx("list changed keys") as conn:
            rows = (await conn.execute(query)).all()
        return [_key_record(r._mapping) for r in rows]

    # -- vault --------------------------------------------------------------------------

    async def put_secret(self, secret: SealedSecret) -> None:
        if secret.version < 1:
            raise StorageError(f"store: secret {secret.name} version must be 1 or more")
        try:
            async with self._tx("put secret") as conn:
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
        async with self._tx("get secret") as conn:
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
        async with self._tx("list secrets") as conn:
            rows = (await conn.execute(query)).all()
        return [SecretInfo(name=r.name, version=r.version, kek_id=r.kek_id, created_at=r.created_at)
                for r in rows]

    async def close(self) -> None:
        await self._engine.dispose()
