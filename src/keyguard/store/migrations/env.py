"""Alembic environment for Keyguard's store.

Keyguard runs migrations itself when it opens a store (``keyguard.store.open_store``): it passes
a live connection from its async engine in ``config.attributes["connection"]`` (Alembic's async
recipe, run through ``AsyncConnection.run_sync``). There is no ``alembic.ini`` and no offline mode.
"""

from __future__ import annotations

from alembic import context

from keyguard.store.schema import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "Keyguard migrations run through keyguard.store.open_store(url), not the alembic CLI"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
