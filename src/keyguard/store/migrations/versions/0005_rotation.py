"""Rotation: upstream key rotations, leases, replica acknowledgements, Keyguard key rotations.

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "upstream_rotations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("upstream", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(128), nullable=False),
        sa.Column("active_slot", sa.String(4), nullable=True),
        sa.Column("standby_slot", sa.String(4), nullable=True),
        sa.Column("active_fp", sa.String(64), nullable=True),
        sa.Column("standby_fp", sa.String(64), nullable=True),
        sa.Column("new_fp", sa.String(64), nullable=True),
        sa.Column("new_version", sa.String(64), nullable=True),
        _time("switched_at", True),
        sa.Column("error", sa.Text(), nullable=True),
        _time("created_at", False),
        _time("updated_at", False),
        _time("finished_at", True),
    )
    op.create_index(
        "ix_upstream_rotations_upstream", "upstream_rotations", ["upstream", "created_at"]
    )
    op.create_table(
        "rotation_leases",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        _time("expires_at", False),
    )
    op.create_table(
        "credential_acks",
        sa.Column("replica", sa.String(64), nullable=False),
        sa.Column("upstream", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        _time("switched_at", True),
        _time("seen_at", False),
        sa.PrimaryKeyConstraint("replica", "upstream", name="pk_credential_acks"),
    )
    op.create_table(
        "key_rotations",
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("token_digest", sa.String(64), nullable=False),
        sa.Column("base_digest", sa.String(64), nullable=False),
        sa.Column("new_digest", sa.String(64), nullable=False),
        _time("rotated_at", False),
        _time("grace_until", False),
        _time("expires_at", True),
        sa.PrimaryKeyConstraint("key_id", "token_digest", name="pk_key_rotations"),
    )
    op.create_index("ix_key_rotations_key_id", "key_rotations", ["key_id", "rotated_at"])


def downgrade() -> None:
    op.drop_index("ix_key_rotations_key_id", table_name="key_rotations")
    op.drop_table("key_rotations")
    op.drop_table("credential_acks")
    op.drop_table("rotation_leases")
    op.drop_index("ix_upstream_rotations_upstream", table_name="upstream_rotations")
    op.drop_table("upstream_rotations")
