"""Keyguard keys: create, verify, list, revoke, expiry, and the secret never stored."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from keyguard.errors import BadRequest, NotFound
from keyguard.keys.format import parse_key
from keyguard.keys.service import KeyService, key_state, validate_app
from keyguard.store import Store
from keyguard.store.base import KeyRecord
from keyguard.store.schema import keys
from keyguard.store.sql import SQLStore

from .conftest import PEPPER

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


async def test_create_returns_the_key_once_and_stores_a_digest(
    service: KeyService, store: Store
) -> None:
    record, full = await service.create("billing-bot", now=T0, description="prod")
    parsed = parse_key(full)
    assert parsed is not None and parsed.key_id == record.key_id
    assert record.app == "billing-bot" and record.description == "prod"
    assert record.created_at == record.updated_at == T0
    assert record.expires_at is None and record.revoked_at is None
    assert record.digest == hmac.new(PEPPER, full.encode(), hashlib.sha256).hexdigest()
    assert record.digest != full and full not in record.digest
    assert await store.get_key(record.key_id) == record


async def test_the_full_key_is_in_no_row_and_no_file(tmp_path: Path, store: Store) -> None:
    service = KeyService(store, PEPPER)
    created = [await service.create("billing-bot", now=T0) for _ in range(3)]
    await service.revoke(created[0][0].key_id, now=T0)
    assert isinstance(store, SQLStore)
    async with store.engine.connect() as conn:
        rows = [tuple(r) for r in (await conn.execute(select(keys))).all()]
    await store.close()
    dumps = repr(rows).encode() + b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for _, full in created:
        secret_part = full[len("kgk_") + 12 : -6]
        assert full.encode() not in dumps
        assert secret_part.encode() not in dumps


async def test_verify(service: KeyService) -> None:
    record, full = await service.create("billing-bot", now=T0)
    other_record, other = await service.create("billing-bot", now=T0)
    assert service.verify(record, full, T0)
    assert not service.verify(record, other, T0)
    assert not service.verify(record, full[:-1] + ("A" if full[-1] != "A" else "B"), T0)
    assert not KeyService(service._store, b"q" * 32).verify(record, full, T0)  # another pepper


async def test_previous_secret_works_only_during_its_grace_period(service: KeyService) -> None:
    record, old = await service.create("billing-bot", now=T0)
    _, new = await service.create("billing-bot", now=T0)
    rotated = replace(
        record,
        digest=service.digest(new),
        previous_digest=record.digest,
        previous_valid_until=T0 + timedelta(hours=1),
    )
    assert service.verify(rotated, new, T0) and service.verify(rotated, old, T0)
    assert not service.verify(rotated, old, T0 + timedelta(hours=1))
    assert service.verify(rotated, new, T0 + timedelta(days=9))


async def test_suspend_and_resume(service: KeyService) -> None:
    record, _ = await service.create("billing-bot", now=T0)
    suspended = await service.suspend(record.key_id, now=T0 + timedelta(seconds=1))
    assert key_state(suspended, T0 + timedelta(seconds=2)) == "suspended"
    assert (await service.suspend(record.key_id, now=T0 + timedelta(seconds=3))) == suspended
    resumed = await service.resume(record.key_id, now=T0 + timedelta(seconds=4))
    assert key_state(resumed, T0 + timedelta(seconds=5)) == "active"
    assert resumed.updated_at > suspended.updated_at
    revoked = await service.revoke(record.key_id, now=T0 + timedelta(seconds=6))
    assert key_state(revoked, T0 + timedelta(seconds=7)) == "revoked"


async def test_expiry_and_states(service: KeyService) -> None:
    record, _ = await service.create("billing-bot", now=T0, expires_in=timedelta(days=90))
    assert record.expires_at == T0 + timedelta(days=90)
    assert key_state(record, T0) == "active"
    assert key_state(record, T0 + timedelta(days=90) - timedelta(microseconds=1)) == "active"
    assert key_state(record, T0 + timedelta(days=90)) == "expired"


def test_key_state_is_pure() -> None:
    record = KeyRecord("AAAAAAAAAAAA", "app", "d" * 64, T0, T0)
    assert key_state(record, T0) == "active"
    revoked = replace(record, revoked_at=T0 + timedelta(hours=1))
    # in force once recorded, even stamped by a clock that runs ahead of this one
    assert key_state(revoked, T0) == "revoked"
    assert key_state(revoked, T0 + timedelta(hours=1)) == "revoked"
    suspended = replace(record, suspended_at=T0 + timedelta(seconds=2))
    assert key_state(suspended, T0) == "suspended"
    both = replace(revoked, expires_at=T0 + timedelta(minutes=1))
    assert key_state(both, T0 + timedelta(days=1)) == "revoked"  # revoked wins


async def test_list_active_by_default(service: KeyService) -> None:
    active, _ = await service.create("billing-bot", now=T0)
    expiring, _ = await service.create("billing-bot", now=T0, expires_in=timedelta(hours=1))
    revoked, _ = await service.create("billing-bot", now=T0)
    other, _ = await service.create("search", now=T0)
    await service.revoke(revoked.key_id, now=T0)
    later = T0 + timedelta(hours=2)

    ids = {r.key_id for r in await service.list(now=later)}
    assert ids == {active.key_id, other.key_id}
    ids = {r.key_id for r in await service.list(now=T0)}
    assert ids == {active.key_id, expiring.key_id, other.key_id}
    ids = {r.key_id for r in await service.list(app="billing-bot", include_revoked=True, now=later)}
    assert ids == {active.key_id, expiring.key_id, revoked.key_id}


async def test_revoke(service: KeyService) -> None:
    record, _ = await service.create("billing-bot", now=T0)
    t1 = T0 + timedelta(minutes=1)
    revoked = await service.revoke(record.key_id, now=t1)
    assert revoked.revoked_at == t1 and key_state(revoked, t1) == "revoked"
    again = await service.revoke(record.key_id, now=t1 + timedelta(hours=1))
    assert again.revoked_at == t1
    assert (await service.get(record.key_id)).revoked_at == t1


@pytest.mark.parametrize("key_id", ["AAAAAAAAAAAA", "short", "x" * 200, "'; DROP TABLE keys"])
async def test_unknown_key_ids_are_not_found(service: KeyService, key_id: str) -> None:
    with pytest.raises(NotFound, match="no key with id") as info:
        await service.revoke(key_id, now=T0)
    assert info.value.status == 404
    with pytest.raises(NotFound):
        await service.get(key_id)


@pytest.mark.parametrize("app", ["", "-lead", "a b", "x" * 65, "ü", "a/b"])
async def test_invalid_app_names(service: KeyService, app: str) -> None:
    with pytest.raises(BadRequest, match="invalid app name"):
        await service.create(app, now=T0)


@pytest.mark.parametrize("app", ["a", "billing-bot", "A.b_c-9", "x" * 64])
def test_valid_app_names(app: str) -> None:
    assert validate_app(app) == app


async def test_bad_arguments(service: KeyService) -> None:
    with pytest.raises(BadRequest, match="future"):
        await service.create("app", now=T0, expires_in=timedelta(0))
    with pytest.raises(BadRequest, match="longer than"):
        await service.create("app", now=T0, description="x" * 300)
    with pytest.raises(BadRequest, match="one line"):
        await service.create("app", now=T0, description="two\nlines")
    with pytest.raises(ValueError, match="timezone-aware"):
        await service.create("app", now=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="pepper"):
        KeyService(service._store, b"short")
