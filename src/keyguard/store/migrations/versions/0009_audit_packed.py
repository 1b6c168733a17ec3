"""Audit: a record's JSON kept packed (deflated against a fixed dictionary, ``packed``).

A nullable column is added (no row is rewritten, on SQLite and PostgreSQL alike: a change of
the catalog only, partitions included). Rows written before keep their text in ``data``; new
rows have ``data = ''`` and the packed bytes (:mod:`keyguard.audit.packing`).

Downgrade: every packed row's text is written back to ``data`` (a rewrite of the rows written
since the upgrade), then the column is dropped.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from keyguard.store.packing import unpack

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 2000


def _text(packed: bytes) -> str:
    """The JSON text of a packed row; for damaged bytes, a text saying so (it fails verify
    as the row did)."""
    try:
        return unpack(bytes(packed))
    except ValueError as exc:
        return json.dumps({"unreadable": str(exc)}, separators=(",", ":"))


def upgrade() -> None:
    op.add_column("audit_records", sa.Column("packed", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    bind = op.get_bind()
    rows = sa.table(
        "audit_records",
        sa.column("chain", sa.String()),
        sa.column("seq", sa.BigInteger()),
        sa.column("data", sa.Text()),
        sa.column("packed", sa.LargeBinary()),
    )
    update = (
        rows.update()
        .where((rows.c.chain == sa.bindparam("c")) & (rows.c.seq == sa.bindparam("s")))
        .values(data=sa.bindparam("d"), packed=None)
    )
    while True:
        batch = bind.execute(
            sa.select(rows.c.chain, rows.c.seq, rows.c.packed)
            .where(rows.c.packed.is_not(None))
            .limit(_BATCH)
        ).all()
        if not batch:
            break
        bind.execute(update, [{"c": r.chain, "s": r.seq, "d": _text(r.packed)} for r in batch])
    with op.batch_alter_table("audit_records") as table:
        table.drop_column("packed")
