"""The store's tables, one schema for SQLite and PostgreSQL (SQLAlchemy Core).

The Alembic migrations in ``keyguard/store/migrations`` create exactly these tables; a test
compares the two so they cannot drift. Timestamps are timezone-aware UTC in Python on every
backend (:class:`UTCDateTime`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

__all__ = ["UTCDateTime", "metadata", "keys", "vault_secrets", "VERSION_TABLE"]

# Alembic's bookkeeping table, named for Keyguard so a shared database stays unambiguous.
VERSION_TABLE = "keyguard_schema_version"


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC ``datetime`` on every backend.

    PostgreSQL stores ``timestamptz``. SQLite has no time zones: values are stored as naive UTC
    and come back with ``tzinfo=UTC``. A naive ``datetime`` is refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: the store only accepts timezone-aware values")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData()

keys = Table(
    "keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("app", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("description", Text(), nullable=False, server_default=""),
    Column("previous_digest", String(64), nullable=True),
    Column("previous_valid_until", UTCDateTime(), nullable=True),
    Column("suspended_at", UTCDateTime(), nullable=True),
    Index("ix_keys_app", "app"),
    Index("ix_keys_updated_at", "updated_at"),
)

vault_secrets = Table(
    "vault_secrets",
    metadata,
    Column("name", String(128), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("kek_id", String(32), nullable=False),
    Column("wrapped_dek", LargeBinary(), nullable=False),
    Column("dek_nonce", LargeBinary(), nullable=False),
    Column("value_nonce", LargeBinary(), nullable=False),
    Column("ciphertext", LargeBinary(), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("name", "version", name="pk_vault_secrets"),
)
