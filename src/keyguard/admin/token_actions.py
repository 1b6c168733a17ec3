"""The admin service's functions over admin tokens: create (never above the creator's role),
list, revoke."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..core.times import utc_seconds
from ..errors import BadRequest
from .recording import Actor, Recorded, token_target
from .settings import ADMIN_ROLES
from .tokens import AdminTokenRecord, AdminTokenService, role_allows

__all__ = ["TokenActions", "token_json"]


def token_json(record: AdminTokenRecord, now: datetime) -> dict[str, Any]:
    return {
        "token_id": record.token_id,
        "name": record.name,
        "role": record.role,
        "state": record.state(now),
        "created_at": utc_seconds(record.created_at),
        "created_by": record.created_by,
        "expires_at": utc_seconds(record.expires_at),
        "revoked_at": utc_seconds(record.revoked_at),
    }


class TokenActions(Recorded):
    _tokens: AdminTokenService

    @property
    def tokens(self) -> AdminTokenService:
        return self._tokens

    async def create_admin_token(
        self, actor: Actor, *, name: str, role: str, expires_in: timedelta | None = None
    ) -> tuple[AdminTokenRecord, str]:
        if role in ADMIN_ROLES and not role_allows(actor.role, role):
            raise BadRequest("a token cannot carry a role above its creator's", reason="role")
        now = self._clock()
        record, token = await self._tokens.create(
            name=name, role=role, created_by=actor.id, now=now, expires_in=expires_in
        )
        self._record(
            actor,
            "admin_tokens.create",
            f"admin-token:{record.token_id}",
            after=token_json(record, now),
        )
        return record, token

    async def list_admin_tokens(self, actor: Actor) -> list[AdminTokenRecord]:
        self._record(actor, "admin_tokens.list", "admin-tokens")
        return await self._tokens.list()

    async def revoke_admin_token(self, actor: Actor, token_id: str) -> AdminTokenRecord:
        now = self._clock()
        record = await self._tokens.revoke(token_id, now=now)
        self._record(
            actor,
            "admin_tokens.revoke",
            token_target(token_id),
            after={"state": record.state(now)},
        )
        return record
