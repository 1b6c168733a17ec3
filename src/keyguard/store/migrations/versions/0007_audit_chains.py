"""Audit: a hash chain per writer, signed head sets tying the chains together, archives.

Records and checkpoints get a ``chain`` column (the writer's id); the records of the one shared
chain written before keep ``chain = ''`` and their hashes, so they verify as they were written.
The records' primary key becomes ``(chain, seq)``: the table is rebuilt (SQLite cannot change a
primary key in place) with every row copied as it is.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = "seq, created_at, kind, data, prev_hash, hash"


def upgrade() -> None:
    op.drop_index("ix_audit_records_created_at", table_name="audit_records")
    if op.get_bind().dialect.name == "postgresql":  # index names are the schema's
        op.execute("ALTER INDEX audit_records_pkey RENAME TO audit_records_0006_pkey")
    op.rename_table("audit_records", "audit_records_0006")
    op.create_table(
        "audit_records",
        sa.Column("chain", sa.String(16), primary_key=True, server_default=""),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.execute(
        f"INSERT INTO audit_records (chain, {_COLUMNS}) "
        f"SELECT '', {_COLUMNS} FROM audit_records_0006"
    )
    op.drop_table("audit_records_0006")
    op.create_index("ix_audit_records_created_at", "audit_records", ["created_at"])
    op.add_column(
        "audit_checkpoints",
        sa.Column("chain", sa.String(16), nullable=False, server_default=""),
    )
    op.create_index("ix_audit_checkpoints_chain_seq", "audit_checkpoints", ["chain", "seq"])
    op.create_index("ix_audit_checkpoints_created_at", "audit_checkpoints", ["created_at"])
    op.create_table(
        "audit_heads",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("writer", sa.String(16), nullable=False),
        sa.Column("heads", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
    )
    op.create_index("ix_audit_heads_created_at", "audit_heads", ["created_at"])
    op.create_table(
        "audit_archives",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("chain", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("the audit chains cannot be merged back into one")
