"""The admin service's functions over Keyguard keys: create, list, read, revoke, suspend,
resume, rotate with grace, and the keys about to stop working."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ..core.times import utc_seconds
from ..errors import BadRequest
from ..keys.service import KeyService, key_state
from ..rotation.keys import ExpiringKey, KeyRotationService, RotationResult
from ..store.base import KeyRecord
from .recording import Actor, Recorded, key_target

__all__ = ["KeyActions", "key_json"]


def key_json(record: KeyRecord, now: datetime) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "app": record.app,
        "state": key_state(record, now),
        "created_at": utc_seconds(record.created_at),
        "expires_at": utc_seconds(record.expires_at),
        "revoked_at": utc_seconds(record.revoked_at),
        "suspended_at": utc_seconds(record.suspended_at),
        "description": record.description,
    }


class KeyActions(Recorded):
    _keys: KeyService
    _key_rotation: KeyRotationService | None
    _key_grace: timedelta
    _on_key_change: Callable[[str], None] | None

    async def create_key(
        self,
        actor: Actor,
        app: str,
        *,
        expires_in: timedelta | None = None,
        description: str = "",
    ) -> tuple[KeyRecord, str]:
        now = self._clock()
        record, key = await self._keys.create(
            app, now=now, expires_in=expires_in, description=description
        )
        if self._on_key_change is not None:  # other replicas learn the new id at once
            self._on_key_change(record.key_id)
        self._record(actor, "keys.create", f"key:{record.key_id}", after=key_json(record, now))
        return record, key

    async def list_keys(
        self, actor: Actor, *, app: str | None = None, include_revoked: bool = False
    ) -> list[KeyRecord]:
        now = self._record(actor, "keys.list", f"app:{app}" if app else "keys")
        return await self._keys.list(app=app, include_revoked=include_revoked, now=now)

    async def get_key(self, actor: Actor, key_id: str) -> KeyRecord:
        self._record(actor, "keys.get", key_target(key_id))
        return await self._keys.get(key_id)

    async def change_key(self, actor: Actor, key_id: str, change: str) -> KeyRecord:
        """``change`` is ``revoke``, ``suspend`` or ``resume``."""
        now = self._clock()
        before = await self._keys.get(key_id)
        if change == "revoke":
            record = await self._keys.revoke(key_id, now=now)
        elif change == "suspend":
            record = await self._keys.suspend(key_id, now=now)
        elif change == "resume":
            record = await self._keys.resume(key_id, now=now)
        else:
            raise BadRequest(f"unknown key change {change[:20]!r}", reason="invalid_change")
        if self._on_key_change is not None:
            self._on_key_change(key_id)
        self._record(
            actor,
            f"keys.{change}",
            key_target(key_id),
            before={"state": key_state(before, now)},
            after={"state": key_state(record, now)},
        )
        return record

    async def rotate_key(
        self,
        actor: Actor,
        key_id: str,
        *,
        grace: timedelta | None = None,
        token: str | None = None,
    ) -> RotationResult:
        """A new secret for ``key_id``; the old one works for ``grace`` (default
        ``rotation.key_grace``). The rotation service records the action."""
        rotation = self._rotation()
        result = await rotation.rotate(
            key_id,
            now=self._clock(),
            grace=self._key_grace if grace is None else grace,
            token=token,
            actor=actor.id,
        )
        if self._on_key_change is not None:
            self._on_key_change(key_id)
        return result

    async def expiring_keys(self, actor: Actor, within: timedelta) -> list[ExpiringKey]:
        """Active keys that stop working within ``within`` (expiry or maximum age)."""
        now = self._record(actor, "keys.list", "keys:expiring")
        return await self._rotation().expiring(within, now=now)

    def _rotation(self) -> KeyRotationService:
        if self._key_rotation is None:  # pragma: no cover - every wiring passes one
            raise BadRequest("key rotation is not available here", reason="no_key_rotation")
        return self._key_rotation
