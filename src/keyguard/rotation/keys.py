"""Keyguard key rotation: a new secret under the same key id, the old one kept for a grace period.

``rotate(key_id, grace=24h, token=T)`` installs a new secret: the record's ``digest`` becomes
the new key's, ``previous_digest`` the old one's with ``previous_valid_until = now + grace``
(``KeyService.verify`` accepts both until then). The key id never changes, so everything keyed
by it (limits, quotas, budgets, audit) carries on untouched.

**Idempotency without storing the key.** The new secret is *derived*, not drawn:
``HMAC-SHA256(rotation key, key id, token, digest being replaced)`` expanded to 32 base62
characters, the rotation key being an internal random vault secret
(``keyguard/key-rotation-key``). The store keeps only ``(key id, HMAC of the token, digest
replaced, digest installed, times)``. Repeating the call with the same token re-derives the
same key and checks it against the stored digest, so it returns the same result; a crash
between recording the token and updating the key is finished by the repeat. Without a token a
random one is used (the call is then not repeatable). A token whose rotation was superseded
by a later one is refused. Records older than 7 days are pruned (the newest per key is kept).

**Accepted everywhere before it is shown.** Gateways cache key records for
``key_cache_ttl_s``; ``rotate`` returns ``accept_delay_s`` after the change so that by the
time anybody holds the new key, every replica accepts it.

**Maximum age.** With ``rotation.key_max_age`` set, a rotation sets ``expires_at = now +
max_age``, keys without a shorter expiry get ``expires_at = last rotation (or creation) +
max_age`` (:meth:`KeyRotationService.enforce_max_age`), and :meth:`expiring` lists keys that
expire within a window (``keyguard keys list --expiring 7d``; the gateway also alerts).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ..errors import BadRequest, StorageError
from ..events import AdminAction, EventBus
from ..keys.format import ALPHABET, CHECKSUM_LENGTH, PREFIX, SECRET_LENGTH, parse_key
from ..keys.service import KeyService, key_state
from ..store.base import KeyRecord, KeyStore
from .store import KeyRotationRecord, RotationStore

__all__ = [
    "KeyRotationService",
    "RotationResult",
    "ExpiringKey",
    "ROTATION_KEY",
    "derive_key",
    "effective_expiry",
    "rotated_expiry",
]

ROTATION_KEY = "keyguard/key-rotation-key"
_TOKEN = re.compile(r"[\x21-\x7e]{1,128}")
_KEEP_RECORDS = timedelta(days=7)
_MAX_GRACE = timedelta(days=30)


def derive_key(rotation_key: bytes, key_id: str, token: str, base_digest: str) -> str:
    """The full key a rotation with ``token`` installs over ``base_digest`` (deterministic)."""
    label = f"keyguard/key-rotation/v1\0{key_id}\0{token}\0{base_digest}\0".encode()
    chars: list[str] = []
    counter = 0
    while len(chars) < SECRET_LENGTH:
        block = hmac.new(rotation_key, label + str(counter).encode(), hashlib.sha256).digest()
        chars += [ALPHABET[b % 62] for b in block if b < 248]  # 248 = 4 * 62: no modulo bias
        counter += 1
    body = PREFIX + key_id + "".join(chars[:SECRET_LENGTH])
    value, out = zlib.crc32(body.encode("ascii")), []
    while value:
        value, rem = divmod(value, 62)
        out.append(ALPHABET[rem])
    full = body + "".join(reversed(out)).rjust(CHECKSUM_LENGTH, "0")
    assert parse_key(full) is not None
    return full


def effective_expiry(
    record: KeyRecord, minted: datetime, max_age: timedelta | None
) -> datetime | None:
    """When ``record`` stops working: its ``expires_at``, or sooner under a maximum age
    counted from ``minted`` (its last rotation, else its creation)."""
    limit = None if max_age is None else minted + max_age
    if record.expires_at is None:
        return limit
    return record.expires_at if limit is None else min(record.expires_at, limit)


def rotated_expiry(
    record: KeyRecord, minted: datetime, now: datetime, max_age: timedelta | None
) -> datetime | None:
    """``expires_at`` after a rotation at ``now``: a fresh ``max_age`` when one is set, else the
    key's previous lifetime again (a key created with ``--expires 90d`` lives 90 more days)."""
    if max_age is not None:
        return now + max_age
    if record.expires_at is None:
        return None
    lifetime = record.expires_at - minted
    return now + lifetime if lifetime > timedelta(0) else record.expires_at


@dataclass(frozen=True, slots=True)
class RotationResult:
    record: KeyRecord
    key: str = field(repr=False)  # shown once to the caller, never stored
    replayed: bool  # True when the token's earlier result was returned


@dataclass(frozen=True, slots=True)
class ExpiringKey:
    record: KeyRecord
    expires_at: datetime
    by_max_age: bool  # expiry comes from the maximum age, not from ``expires_at``


class KeyRotationService:
    def __init__(
        self,
        keys: KeyService,
        store: KeyStore,
        log: RotationStore,
        rotation_key: bytes,
        *,
        max_age: timedelta | None = None,
        events: EventBus | None = None,
        accept_delay_s: float = 0.0,
    ) -> None:
        self._keys = keys
        self._store = store
        self._log = log
        self._rotation_key = rotation_key
        self._max_age = max_age
        self._events = events
        self._accept_delay = accept_delay_s

    def _token_digest(self, key_id: str, token: str) -> str:
        message = f"keyguard/key-rotation-token/v1\0{key_id}\0{token}".encode()
        return hmac.new(self._rotation_key, message, hashlib.sha256).hexdigest()

    async def rotate(
        self,
        key_id: str,
        *,
        now: datetime,
        grace: timedelta,
        token: str | None = None,
        actor: str = "system",
    ) -> RotationResult:
        """Rotate ``key_id``'s secret; see the module docstring."""
        if not timedelta(0) <= grace <= _MAX_GRACE:
            raise BadRequest("grace must be between 0s and 30d", reason="invalid_grace")
        if token is not None and not _TOKEN.fullmatch(token):
            raise BadRequest(
                "the idempotency token must be 1-128 printable ASCII characters",
                reason="invalid_token",
            )
        token = token or secrets.token_urlsafe(24)
        digest = self._token_digest(key_id, token)
        for _ in range(5):
            record = await self._keys.get(key_id)
            done = await self._log.key_rotation(key_id, digest)
            if done is not None:
                return await self._replay(record, token, done)
            state = key_state(record, now)
            if state in ("revoked", "expired"):
                raise BadRequest(
                    f"key {key_id} is {state}; create a new key instead", reason=f"key_{state}"
                )
            last = await self._log.last_key_rotation(key_id)
            minted = last.rotated_at if last is not None else record.created_at
            full = derive_key(self._rotation_key, key_id, token, record.digest)
            planned = KeyRotationRecord(
                key_id=key_id,
                token_digest=digest,
                base_digest=record.digest,
                new_digest=self._keys.digest(full),
                rotated_at=now,
                grace_until=now + grace,
                expires_at=rotated_expiry(record, minted, now, self._max_age),
            )
            if not await self._log.record_key_rotation(planned):
                continue  # the same token, concurrently: replay it
            if await self._install(record, planned, now, self._keys.fingerprint(full)):
                await self._log.prune_key_rotations(now - _KEEP_RECORDS)
                return await self._done(record.key_id, full, False, actor, now)
            current = await self._keys.get(key_id)
            if hmac.compare_digest(current.digest, planned.new_digest):  # a repeat installed it
                return await self._done(record.key_id, full, False, actor, now)
            await self._log.forget_key_rotation(key_id, digest)  # lost a race: start over
        raise StorageError(f"store: key {key_id} kept changing; try again")

    async def _install(
        self, record: KeyRecord, planned: KeyRotationRecord, now: datetime, fingerprint: str | None
    ) -> bool:
        graced = planned.grace_until > now  # no grace (a leak): the old secret is not kept
        updated = replace(
            record,
            digest=planned.new_digest,
            fingerprint=fingerprint,
            previous_digest=planned.base_digest if graced else None,
            previous_valid_until=planned.grace_until if graced else None,
            expires_at=planned.expires_at,
            updated_at=max(now, record.updated_at + timedelta(microseconds=1)),
        )
        return await self._store.replace_key(updated, expected_updated_at=record.updated_at)

    async def _replay(
        self, record: KeyRecord, token: str, done: KeyRotationRecord
    ) -> RotationResult:
        full = derive_key(self._rotation_key, record.key_id, token, done.base_digest)
        if not hmac.compare_digest(self._keys.digest(full), done.new_digest):
            raise StorageError("store: the key rotation record does not match; rotate again")
        for _ in range(5):
            if hmac.compare_digest(record.digest, done.new_digest):
                return RotationResult(record, full, True)
            if not hmac.compare_digest(record.digest, done.base_digest):
                break
            # recorded but not installed (a crash, or the first call is still running)
            if await self._install(record, done, done.rotated_at, self._keys.fingerprint(full)):
                return await self._done(record.key_id, full, True, "system", done.rotated_at)
            record = await self._keys.get(record.key_id)
        else:
            raise StorageError(f"store: key {record.key_id} kept changing; try again")
        raise BadRequest(
            f"this idempotency token's rotation of key {record.key_id} was superseded by a "
            "later rotation; use a new token",
            code="Conflict",
            reason="rotation_superseded",
        )

    async def _done(
        self, key_id: str, full: str, replayed: bool, actor: str, now: datetime
    ) -> RotationResult:
        record = await self._keys.get(key_id)
        if self._events is not None and not replayed:
            self._events.emit(
                AdminAction(
                    created=now,
                    actor=actor,
                    action="keys.rotate",
                    target=f"key:{key_id}",
                    after={
                        "previous_valid_until": record.previous_valid_until,
                        "expires_at": record.expires_at,
                    },
                )
            )
        if self._accept_delay > 0:
            await asyncio.sleep(self._accept_delay)  # every replica's key cache has refreshed
        return RotationResult(record, full, replayed)

    async def _minted(self) -> dict[str, datetime]:
        return await self._log.last_key_rotations()

    async def expiring(self, within: timedelta, *, now: datetime) -> list[ExpiringKey]:
        """Active keys that stop working before ``now + within``, soonest first."""
        minted = await self._minted()
        found: list[ExpiringKey] = []
        for record in await self._keys.list(now=now):
            when = effective_expiry(
                record, minted.get(record.key_id, record.created_at), self._max_age
            )
            if when is not None and when <= now + within:
                found.append(ExpiringKey(record, when, record.expires_at != when))
        return sorted(found, key=lambda e: e.expires_at)

    async def enforce_max_age(self, *, now: datetime) -> list[KeyRecord]:
        """Stamp ``expires_at`` from the maximum age on keys that would outlive it."""
        if self._max_age is None:
            return []
        minted = await self._minted()
        changed: list[KeyRecord] = []
        for record in await self._keys.list(now=now):
            when = effective_expiry(
                record, minted.get(record.key_id, record.created_at), self._max_age
            )
            if when is None or when == record.expires_at:
                continue
            updated = replace(
                record,
                expires_at=when,
                updated_at=max(now, record.updated_at + timedelta(microseconds=1)),
            )
            if await self._store.replace_key(updated, expected_updated_at=record.updated_at):
                changed.append(updated)
        return changed
