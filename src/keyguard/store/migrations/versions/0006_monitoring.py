"""Monitoring: the hash-chained audit log, signed checkpoints, incidents, blocks, baselines.

Revision ID: 0006
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        _time("created_at"),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_records_created_at", "audit_records", ["created_at"])
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        _time("created_at"),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
    )
    op.create_index("ix_audit_checkpoints_seq", "audit_checkpoints", ["seq"])
    op.create_table(
        "monitor_incidents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(160), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("app", sa.String(64), nullable=True),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("actions", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        _time("created_at"),
        _time("updated_at"),
    )
    op.create_index("ix_monitor_incidents_created_at", "monitor_incidents", ["created_at"])
    op.create_table(
        "monitor_blocks",
        sa.Column("subject", sa.String(160), primary_key=True),
        _time("until"),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("incident_id", sa.String(32), nullable=True),
        _time("created_at"),
    )
    op.create_table(
        "detect_profiles",
        sa.Column("subject", sa.String(160), primary_key=True),
        sa.Column("data", sa.Text(), nullable=False),
        _time("updated_at"),
    )


def downgrade() -> None:
    op.drop_table("detect_profiles")
    op.drop_table("monitor_blocks")
    op.drop_index("ix_monitor_incidents_created_at", table_name="monitor_incidents")
    op.drop_table("monitor_incidents")
    op.drop_index("ix_audit_checkpoints_seq", table_name="audit_checkpoints")
    op.drop_table("audit_checkpoints")
    op.drop_index("ix_audit_records_created_at", table_name="audit_records")
    op.drop_table("audit_records")
