"""Audit: on PostgreSQL, the records and checkpoints partitioned by the day a chain opened.

Both tables become ``PARTITION BY RANGE (chain)``: a writer's chain id starts with the time it
opened (``t`` + 8 hex digits of epoch seconds, :mod:`keyguard.audit.partitions`), so each
chain lies whole in one day's partition, and archiving every chain of a day is a ``DROP`` of
that partition. The table as it was is attached as it is, without a copy, as the partition of
every id below ``'t'`` (the random ids of earlier versions and the shared chain ``''``):

* records: its primary key ``(chain, seq)`` and its time index become the partitioned ones
  (no index is built); ``ATTACH`` reads the whole table once to check that every chain id is
  below ``'t'`` (a sequential scan, no rewrite), writers waiting meanwhile;
* checkpoints: the parent has no primary key (one including ``chain`` would have to be built
  over the whole table); every partition keeps its own on ``id``, unique through the one
  sequence; the same single scan.

A ``DEFAULT`` partition takes any chain no day partition holds (a partition not created in
time, a writer whose clock is far off), so an insert never fails. Day partitions are created
ahead by the writers. SQLite is unchanged.

Downgrade: the old tables are detached and the rows of every later partition copied into them
(a copy of what was written since the upgrade, not of the whole log).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RECORDS = "chain, seq, created_at, kind, data, prev_hash, hash"
_CHECKPOINTS = "id, seq, hash, created_at, key_id, signature, chain"
_LEGACY = "FOR VALUES FROM (MINVALUE) TO ('t')"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE audit_records RENAME TO audit_records_legacy")
    op.execute("ALTER INDEX audit_records_pkey RENAME TO audit_records_legacy_pkey")
    op.execute("ALTER INDEX ix_audit_records_created_at RENAME TO audit_records_legacy_created_at")
    op.execute(
        "CREATE TABLE audit_records ("
        " chain VARCHAR(16) NOT NULL DEFAULT '', seq BIGINT NOT NULL,"
        " created_at TIMESTAMP WITH TIME ZONE NOT NULL, kind VARCHAR(16) NOT NULL,"
        " data TEXT NOT NULL, prev_hash VARCHAR(64) NOT NULL, hash VARCHAR(64) NOT NULL,"
        " CONSTRAINT audit_records_pkey PRIMARY KEY (chain, seq)"
        ") PARTITION BY RANGE (chain)"
    )
    op.execute("CREATE INDEX ix_audit_records_created_at ON audit_records (created_at)")
    _attach("audit_records", _RECORDS, "")

    for old, new in (
        ("audit_checkpoints_pkey", "audit_checkpoints_legacy_pkey"),
        ("ix_audit_checkpoints_seq", "audit_checkpoints_legacy_seq"),
        ("ix_audit_checkpoints_chain_seq", "audit_checkpoints_legacy_chain_seq"),
        ("ix_audit_checkpoints_created_at", "audit_checkpoints_legacy_created_at"),
    ):
        op.execute(f"ALTER INDEX {old} RENAME TO {new}")
    op.execute("ALTER TABLE audit_checkpoints RENAME TO audit_checkpoints_legacy")
    op.execute(
        "CREATE TABLE audit_checkpoints ("
        " id INTEGER NOT NULL DEFAULT nextval('audit_checkpoints_id_seq'::regclass),"
        " seq BIGINT NOT NULL, hash VARCHAR(64) NOT NULL,"
        " created_at TIMESTAMP WITH TIME ZONE NOT NULL, key_id VARCHAR(32) NOT NULL,"
        " signature VARCHAR(128) NOT NULL, chain VARCHAR(16) NOT NULL DEFAULT ''"
        ") PARTITION BY RANGE (chain)"
    )
    op.execute("CREATE INDEX ix_audit_checkpoints_seq ON audit_checkpoints (seq)")
    op.execute("CREATE INDEX ix_audit_checkpoints_chain_seq ON audit_checkpoints (chain, seq)")
    op.execute("CREATE INDEX ix_audit_checkpoints_created_at ON audit_checkpoints (created_at)")
    _attach("audit_checkpoints", _CHECKPOINTS, " (PRIMARY KEY (id))")


def _attach(table: str, columns: str, key: str) -> None:
    """The old table as the partition of the ids below 't', and the default partition. Rows
    of ids from 't' on (a store downgraded after 0008, then upgraded again) are moved to the
    default partition first (found through the index on chain: nothing to read otherwise)."""
    legacy = f"{table}_legacy"
    op.execute(f"CREATE TABLE {table}_moved AS SELECT {columns} FROM {legacy} WHERE chain >= 't'")
    op.execute(f"DELETE FROM {legacy} WHERE chain >= 't'")
    op.execute(f"ALTER TABLE {table} ATTACH PARTITION {legacy} {_LEGACY}")
    op.execute(f"CREATE TABLE {table}_default PARTITION OF {table}{key} DEFAULT")
    op.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {table}_moved")
    op.execute(f"DROP TABLE {table}_moved")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE audit_records DETACH PARTITION audit_records_legacy")
    op.execute(
        f"INSERT INTO audit_records_legacy ({_RECORDS}) SELECT {_RECORDS} FROM audit_records"
    )
    op.execute("DROP TABLE audit_records")
    op.execute("ALTER TABLE audit_records_legacy RENAME TO audit_records")
    op.execute("ALTER INDEX audit_records_legacy_pkey RENAME TO audit_records_pkey")
    op.execute("ALTER INDEX audit_records_legacy_created_at RENAME TO ix_audit_records_created_at")

    op.execute("ALTER TABLE audit_checkpoints DETACH PARTITION audit_checkpoints_legacy")
    op.execute(
        f"INSERT INTO audit_checkpoints_legacy ({_CHECKPOINTS}) "
        f"SELECT {_CHECKPOINTS} FROM audit_checkpoints"
    )
    op.execute("DROP TABLE audit_checkpoints")
    op.execute("ALTER TABLE audit_checkpoints_legacy RENAME TO audit_checkpoints")
    for old, new in (
        ("audit_checkpoints_pkey", "audit_checkpoints_legacy_pkey"),
        ("ix_audit_checkpoints_seq", "audit_checkpoints_legacy_seq"),
        ("ix_audit_checkpoints_chain_seq", "audit_checkpoints_legacy_chain_seq"),
        ("ix_audit_checkpoints_created_at", "audit_checkpoints_legacy_created_at"),
    ):
        op.execute(f"ALTER INDEX {new} RENAME TO {old}")
