"""Keyguard keys as a service: create, list, revoke, and check a presented key.

The CLI (``keyguard keys ...``) and the admin API call these same methods. A key's secret exists
in exactly one place outside the client: the return value of :meth:`KeyService.create`. The store
keeps ``digest = HMAC-SHA256(pepper, key)``, the pepper being an internal vault secret
(``keyguard/pepper``), so a copy of the database alone cannot be used to test guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Literal

from ..durations import parse_duration
from ..errors import BadRequest, NotFound, StorageError, shown
from ..store.base import KeyRecord, KeyStore
from .format import ID_LENGTH, generate_key

__all__ = [
    "KeyService",
    "KeyState",
    "key_state",
    "validate_app",
    "parse_duration",
    "APP_PATTERN",
]

KeyState = Literal["active", "expired", "revoked", "suspended"]
APP_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KEY_ID = re.compile(rf"[0-9A-Za-z]{{{ID_LENGTH}}}")
MAX_DESCRIPTION = 256


def key_state(record: KeyRecord, now: datetime) -> KeyState:
    """``revoked`` wins over ``expired``, which wins over ``suspended``; a key expires at
    ``expires_at`` exactly. A revocation or suspension is in force from the moment it is
    recorded, whatever its time stamp says: written by a replica whose clock runs ahead (or
    read by a request that arrived just before it), it must not wait for ``now`` to catch up."""
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    if record.suspended_at is not None:
        return "suspended"
    return "active"


def validate_app(app: str) -> str:
    """Return ``app`` if it is a valid app name, else raise :class:`BadRequest`."""
    if not APP_PATTERN.fullmatch(app):
        raise BadRequest(
            f"invalid app name {app[:80]!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            reason="invalid_app",
        )
    return app


def _validate_description(description: str) -> str:
    if len(description) > MAX_DESCRIPTION:
        raise BadRequest(
            f"description is longer than {MAX_DESCRIPTION} characters", reason="invalid_description"
        )
    if any(not ch.isprintable() for ch in description):
        raise BadRequest(
            "description must be printable text on one line", reason="invalid_description"
        )
    return description


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")


class KeyService:
    """Keyguard keys over a :class:`~keyguard.store.base.KeyStore`, digested with ``pepper``."""

    def __init__(
        self,
        store: KeyStore,
        pepper: bytes,
        fingerprint: Callable[[str], str] | None = None,
    ) -> None:
        if len(pepper) < 16:
            raise ValueError("the key-digest pepper must be at least 16 bytes")
        self._store = store
        self._pepper = pepper
        self._fingerprint = fingerprint

    def fingerprint(self, full_key: str) -> str | None:
        """The keyed fingerprint a secret scanner computes for this key (``None`` without one)."""
        return self._fingerprint(full_key) if self._fingerprint is not None else None

    def digest(self, full_key: str) -> str:
        """Hex HMAC-SHA256(pepper, key): what the store keeps instead of the key."""
        return hmac.new(self._pepper, full_key.encode(), hashlib.sha256).hexdigest()

    def verify(self, record: KeyRecord, full_key: str, now: datetime) -> bool:
        """True when ``full_key`` is the key's current secret, or its previous secret while
        the grace period after a rotation lasts (constant-time comparisons)."""
        digest = self.digest(full_key)
        if hmac.compare_digest(digest, record.digest):
            return True
        previous, until = record.previous_digest, record.previous_valid_until
        if previous is None or until is None:
            return False
        return hmac.compare_digest(digest, previous) and now < until

    async def create(
        self,
        app: str,
        *,
        now: datetime,
        expires_in: timedelta | None = None,
        description: str = "",
    ) -> tuple[KeyRecord, str]:
        """Create a key for ``app``; return its record and the full key (shown once only)."""
        _require_aware(now)
        validate_app(app)
        _validate_description(description)
        if expires_in is not None and expires_in <= timedelta(0):
            raise BadRequest("expiry must be in the future", reason="invalid_expiry")
        key = generate_key()
        record = KeyRecord(
            key_id=key.key_id,
            app=app,
            digest=self.digest(key.full),
            created_at=now,
            updated_at=now,
            expires_at=None if expires_in is None else now + expires_in,
            revoked_at=None,
            description=description,
            fingerprint=self.fingerprint(key.full),
        )
        await self._store.create_key(record)
        return record, key.full

    async def get(self, key_id: str) -> KeyRecord:
        """The record for ``key_id``; :class:`NotFound` when there is none."""
        record = await self._store.get_key(key_id) if _KEY_ID.fullmatch(key_id) else None
        if record is None:
            raise NotFound(f"no key with id {shown(key_id)}", reason="unknown_key")
        return record

    async def list(
        self, *, app: str | None = None, include_revoked: bool = False, now: datetime
    ) -> list[KeyRecord]:
        """Active keys (optionally of one ``app``); ``include_revoked`` adds revoked and expired."""
        _require_aware(now)
        if app is not None:
            validate_app(app)
        records = await self._store.list_keys(app=app, include_revoked=include_revoked)
        if include_revoked:
            return records
        return [r for r in records if key_state(r, now) == "active"]

    async def suspend(self, key_id: str, *, now: datetime) -> KeyRecord:
        """Suspend ``key_id`` (reversible with :meth:`resume`); idempotent."""
        return await self._set_suspended(key_id, now, now)

    async def resume(self, key_id: str, *, now: datetime) -> KeyRecord:
        """Lift a suspension; idempotent."""
        return await self._set_suspended(key_id, None, now)

    async def _set_suspended(self, key_id: str, at: datetime | None, now: datetime) -> KeyRecord:
        _require_aware(now)
        for _ in range(5):  # compare-and-set: retry if the record changed meanwhile
            record = await self.get(key_id)
            if record.suspended_at == at or (at is not None and record.suspended_at is not None):
                return record
            updated = replace(record, suspended_at=at, updated_at=max(now, record.updated_at))
            if updated.updated_at == record.updated_at:
                updated = replace(updated, updated_at=record.updated_at + timedelta(microseconds=1))
            if await self._store.replace_key(updated, expected_updated_at=record.updated_at):
                return updated
        raise StorageError(f"store: key {key_id} kept changing; try again")

    async def revoke(self, key_id: str, *, now: datetime) -> KeyRecord:
        """Revoke ``key_id`` (idempotent: revoking twice keeps the first time)."""
        _require_aware(now)
        record = await self._store.revoke_key(key_id, now) if _KEY_ID.fullmatch(key_id) else None
        if record is None:
            raise NotFound(f"no key with id {shown(key_id)}", reason="unknown_key")
        return record
