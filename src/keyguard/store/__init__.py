"""Keyguard's store: keys and sealed vault secrets in SQLite or PostgreSQL.

``await open_store(url)`` picks the backend from the URL scheme, opens an async engine, brings the
schema to the latest Alembic revision (the migrations ship inside this package, in
``keyguard/store/migrations``) and returns a :class:`~keyguard.store.base.Store`::

    store = await open_store("sqlite:///var/lib/keyguard/keyguard.db")
    store = await open_store("postgresql://keyguard@db.internal/keyguard?sslmode=require")

Importing this package is cheap: SQLAlchemy and Alembic are imported when a store is opened
(``keyguard --help`` and the scanner never pay for them).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigurationError
from .base import KeyRecord, KeyStore, SealedSecret, SecretInfo, Store, VaultStore

__all__ = [
    "BACKENDS",
    "open_store",
    "Store",
    "KeyStore",
    "VaultStore",
    "KeyRecord",
    "SealedSecret",
    "SecretInfo",
]

# URL scheme -> the SQLAlchemy async driver that serves it (one SQL implementation for both).
BACKENDS: dict[str, str] = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


async def open_store(url: str) -> Store:
    """Open the store at ``url`` (``sqlite:///PATH`` or ``postgresql://...``), migrated to head.

    Raises :class:`ConfigurationError` for an unknown or malformed URL and
    :class:`~keyguard.errors.StorageError` when the database cannot be reached or migrated.
    """
    scheme = urlsplit(url).scheme if "://" in url else ""
    driver = BACKENDS.get(scheme)
    if driver is None:
        raise ConfigurationError(
            f"store: unknown URL scheme {scheme!r}; use sqlite:///PATH or "
            "postgresql://USER@HOST/DB (schemes: " + ", ".join(sorted(BACKENDS)) + ")"
        )
    from .sql import open_sql_store

    return await open_sql_store(url, driver)
