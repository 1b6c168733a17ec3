"""Incidents: an operator's acknowledgement (who and when).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("monitor_incidents") as batch:
        batch.add_column(sa.Column("acknowledged_by", sa.String(160), nullable=True))
        batch.add_column(sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("monitor_incidents") as batch:
        batch.drop_column("acknowledged_at")
        batch.drop_column("acknowledged_by")
