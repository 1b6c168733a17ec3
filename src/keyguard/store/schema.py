"""The store's tables, one schema for SQLite and PostgreSQL (SQLAlchemy Core).

The Alembic migrations in ``keyguard/store/migrations`` create exactly these tables; a test
compares the two so they cannot drift. Timestamps are timezone-aware UTC in Python on every
backend (:class:`UTCDateTime`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
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
    Column("fingerprint", String(64), nullable=True),
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


# -- Rotation (migration 0005): upstream key rotations, their leases, the key version each
# -- replica serves, and Keyguard key rotations (idempotency records; never a secret).

upstream_rotations = Table(
    "upstream_rotations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("upstream", String(64), nullable=False),
    Column("mode", String(8), nullable=False),
    Column("state", String(16), nullable=False),
    Column("trigger", String(128), nullable=False),
    Column("active_slot", String(4), nullable=True),
    Column("standby_slot", String(4), nullable=True),
    Column("active_fp", String(64), nullable=True),
    Column("standby_fp", String(64), nullable=True),
    Column("new_fp", String(64), nullable=True),
    Column("new_version", String(64), nullable=True),
    Column("switched_at", UTCDateTime(), nullable=True),
    Column("error", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Index("ix_upstream_rotations_upstream", "upstream", "created_at"),
)

rotation_leases = Table(
    "rotation_leases",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
)

credential_acks = Table(
    "credential_acks",
    metadata,
    Column("replica", String(64), nullable=False),
    Column("upstream", String(64), nullable=False),
    Column("version", String(64), nullable=True),
    Column("switched_at", UTCDateTime(), nullable=True),
    Column("seen_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("replica", "upstream", name="pk_credential_acks"),
)

key_rotations = Table(
    "key_rotations",
    metadata,
    Column("key_id", String(32), nullable=False),
    Column("token_digest", String(64), nullable=False),
    Column("base_digest", String(64), nullable=False),
    Column("new_digest", String(64), nullable=False),
    Column("rotated_at", UTCDateTime(), nullable=False),
    Column("grace_until", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    PrimaryKeyConstraint("key_id", "token_digest", name="pk_key_rotations"),
    Index("ix_key_rotations_key_id", "key_id", "rotated_at"),
)


# -- Identity and policy (migration 0003): the policy document managed through the admin API
# -- (append-only revisions; the latest is in force) and admin tokens (HMAC digests only).

policy_revisions = Table(
    "policy_revisions",
    metadata,
    Column("version", Integer(), primary_key=True, autoincrement=False),
    Column("document", Text(), nullable=False),  # JSON
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(200), nullable=False),
)

admin_tokens = Table(
    "admin_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
)


# -- Monitoring (migration 0006): the hash-chained audit log and its signed checkpoints,
# -- incidents, temporary blocks, and detector baselines (no secret, no prompt in any of them).

# Migration 0007: a chain per writer (``chain``: the writer's id; "" for the records of the one
# shared chain of earlier versions) and the signed head sets tying the chains together.
audit_records = Table(
    "audit_records",
    metadata,
    Column("chain", String(16), primary_key=True, server_default=""),
    Column("seq", BigInteger(), primary_key=True, autoincrement=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("data", Text(), nullable=False),  # canonical JSON ('' when packed)
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("packed", LargeBinary(), nullable=True),  # migration 0009: audit/packing.py
    Index("ix_audit_records_created_at", "created_at"),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("seq", BigInteger(), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("signature", String(128), nullable=False),
    Column("chain", String(16), nullable=False, server_default=""),
    Index("ix_audit_checkpoints_seq", "seq"),
    Index("ix_audit_checkpoints_chain_seq", "chain", "seq"),
    Index("ix_audit_checkpoints_created_at", "created_at"),
)

audit_heads = Table(
    "audit_heads",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("writer", String(16), nullable=False),
    Column("heads", Text(), nullable=False),  # canonical JSON {chain: [seq, hash]}
    Column("key_id", String(32), nullable=False),
    Column("signature", String(128), nullable=False),
    Index("ix_audit_heads_created_at", "created_at"),
)

audit_archives = Table(  # signed manifests of chains moved out to archive files
    "audit_archives",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("chain", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("manifest", Text(), nullable=False),  # the manifest's JSON line, signature included
)

monitor_incidents = Table(
    "monitor_incidents",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("rule", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("subject", String(160), nullable=False),
    Column("status", String(16), nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("app", String(64), nullable=True),
    Column("source", String(64), nullable=True),
    Column("summary", Text(), nullable=False),
    Column("evidence", Text(), nullable=False),  # JSON
    Column("actions", Text(), nullable=False),  # JSON
    Column("count", Integer(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # migration 0011: who acknowledged it, and when
    Column("acknowledged_by", String(160), nullable=True),
    Column("acknowledged_at", UTCDateTime(), nullable=True),
    Index("ix_monitor_incidents_created_at", "created_at"),
)

monitor_blocks = Table(
    "monitor_blocks",
    metadata,
    Column("subject", String(160), primary_key=True),
    Column("until", UTCDateTime(), nullable=False),
    Column("rule", String(32), nullable=False),
    Column("incident_id", String(32), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

detect_profiles = Table(
    "detect_profiles",
    metadata,
    Column("subject", String(160), primary_key=True),
    Column("data", Text(), nullable=False),  # JSON
    Column("updated_at", UTCDateTime(), nullable=False),
)

# --- Limits (migration 0004) --------------------------------------------------------------
# The in-process limits backend's long-window counters (hour/day/month token quotas and
# budgets), saved periodically so a restart of the embedded default keeps them.

limit_counters = Table(
    "limit_counters",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("level", BigInteger(), nullable=False),
    Column("expires_at", BigInteger(), nullable=False),  # epoch seconds
)


# The operator console's sign-in sessions (migration 0010), shared by every process and
# replica: the SHA-256 of the cookie's session id, never the id; the admin token's id, never
# the token.

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_digest", String(64), primary_key=True),
    Column("token_id", String(32), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("seen_at", UTCDateTime(), nullable=False, index=True),
    # migration 0012: an Entra ID sign-in's identity, role and end (the token's expiry)
    Column("entra_oid", String(36)),
    Column("role", String(16)),
    Column("ends_at", UTCDateTime()),
)
