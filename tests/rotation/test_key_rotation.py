"""Keyguard key rotation: grace periods, idempotency tokens, the stable key id, maximum age."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyguard.errors import BadRequest
from keyguard.events import AdminAction, Event
from keyguard.keys.format import parse_key
from keyguard.rotation.keys import KeyRotationService, derive_key, effective_expiry, rotated_expiry
from keyguard.store.base import KeyRecord
from keyguard.wiring.rotation import key_rotation_service, rotate_leaked_key
from keyguard.wiring.runtime import Runtime, open_runtime
from tests.support.settings import keyguard_settings
from tests.support.stored import stored_bytes

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_derived_keys_are_valid_deterministic_and_bound_to_their_inputs() -> None:
    secret = b"s" * 32
    key = derive_key(secret, "A" * 12, "token-1", "d" * 64)
    parsed = parse_key(key)
    assert parsed is not None and parsed.key_id == "A" * 12
    assert key == derive_key(secret, "A" * 12, "token-1", "d" * 64)
    others = {
        derive_key(b"t" * 32, "A" * 12, "token-1", "d" * 64),
        derive_key(secret, "B" * 12, "token-1", "d" * 64),
        derive_key(secret, "A" * 12, "token-2", "d" * 64),
        derive_key(secret, "A" * 12, "token-1", "e" * 64),
    }
    assert key not in others and len(others) == 4


def test_expiry_rules() -> None:
    rec = KeyRecord("k" * 12, "app", "d", T0, T0, expires_at=T0 + 90 * DAY)
    assert effective_expiry(rec, T0, None) == T0 + 90 * DAY
    assert effective_expiry(rec, T0, 30 * DAY) == T0 + 30 * DAY
    assert effective_expiry(replace(rec, expires_at=None), T0, None) is None
    # a rotation gives the key its lifetime again, or a fresh maximum age
    assert rotated_expiry(rec, T0, T0 + 80 * DAY, None) == T0 + 170 * DAY
    assert rotated_expiry(rec, T0, T0 + 80 * DAY, 30 * DAY) == T0 + 110 * DAY
    assert rotated_expiry(replace(rec, expires_at=None), T0, T0, None) is None


async def test_old_secret_works_until_the_grace_period_ends(
    runtime: Runtime, service: KeyRotationService
) -> None:
    events: list[Event] = []
    runtime.events.subscribe(events.append)
    record, old = await runtime.keys.create("billing", now=T0)
    result = await service.rotate(record.key_id, now=T0 + DAY, grace=timedelta(hours=24))
    new = result.key
    assert new != old and parse_key(new) is not None
    assert result.record.key_id == record.key_id and result.record.app == "billing"
    assert not result.replayed
    stored = await runtime.keys.get(record.key_id)
    assert stored.fingerprint == runtime.vault.fingerprint(new)  # scanners match the new key
    assert runtime.keys.verify(stored, new, T0 + DAY)
    assert runtime.keys.verify(stored, old, T0 + DAY + timedelta(hours=23))
    assert not runtime.keys.verify(stored, old, T0 + 2 * DAY)
    assert runtime.keys.verify(stored, new, T0 + 30 * DAY)
    rotated = [e for e in events if isinstance(e, AdminAction)]
    assert [(e.action, e.target) for e in rotated] == [("keys.rotate", f"key:{record.key_id}")]
    assert new not in repr(events) and old not in repr(events)


async def test_the_same_token_returns_the_same_key_without_storing_it(
    runtime: Runtime, service: KeyRotationService, tmp_path: Path
) -> None:
    record, _ = await runtime.keys.create("billing", now=T0)
    first = await service.rotate(record.key_id, now=T0, grace=DAY, token="deploy-42")
    again = await service.rotate(
        record.key_id, now=T0 + timedelta(hours=1), grace=DAY, token="deploy-42"
    )
    assert again.key == first.key and again.replayed
    assert again.record.digest == first.record.digest  # no second rotation
    assert first.record.previous_valid_until == T0 + DAY
    raw = stored_bytes(tmp_path)
    assert first.key.encode() not in raw and b"deploy-42" not in raw

    second = await service.rotate(record.key_id, now=T0 + 2 * DAY, grace=DAY, token="deploy-43")
    assert second.key != first.key
    with pytest.raises(BadRequest, match="superseded") as info:
        await service.rotate(record.key_id, now=T0 + 3 * DAY, grace=DAY, token="deploy-42")
    assert info.value.code == "Conflict"


async def test_concurrent_calls_with_one_token_rotate_once(
    runtime: Runtime, service: KeyRotationService
) -> None:
    record, _ = await runtime.keys.create("billing", now=T0)
    results = await asyncio.gather(
        *(service.rotate(record.key_id, now=T0, grace=DAY, token="t") for _ in range(4))
    )
    assert len({r.key for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1


async def test_a_crash_between_record_and_install_is_finished_by_the_repeat(
    runtime: Runtime, service: KeyRotationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, old = await runtime.keys.create("billing", now=T0)

    async def dies(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("process killed")

    with monkeypatch.context() as patch:
        patch.setattr(runtime.store, "replace_key", dies)
        with pytest.raises(RuntimeError):
            await service.rotate(record.key_id, now=T0, grace=DAY, token="t")
    assert runtime.keys.verify(await runtime.keys.get(record.key_id), old, T0)
    result = await service.rotate(
        record.key_id, now=T0 + timedelta(minutes=5), grace=DAY, token="t"
    )
    stored = await runtime.keys.get(record.key_id)
    assert result.replayed and runtime.keys.verify(stored, result.key, T0)
    assert stored.previous_valid_until == T0 + DAY  # the recorded grace, not a new one


async def test_rotation_refuses_bad_input_and_dead_keys(
    runtime: Runtime, service: KeyRotationService
) -> None:
    record, _ = await runtime.keys.create("billing", now=T0)
    with pytest.raises(BadRequest, match="grace"):
        await service.rotate(record.key_id, now=T0, grace=timedelta(days=31))
    with pytest.raises(BadRequest, match="idempotency token"):
        await service.rotate(record.key_id, now=T0, grace=DAY, token="has space")
    await runtime.keys.revoke(record.key_id, now=T0)
    with pytest.raises(BadRequest, match="revoked"):
        await service.rotate(record.key_id, now=T0, grace=DAY)


async def test_max_age_expires_keys_and_rotation_renews_them(tmp_path: Path) -> None:
    settings = keyguard_settings(tmp_path, rotation={"key_max_age": "30d"})
    rt = await open_runtime(settings, {})
    try:
        service = await key_rotation_service(rt, accept_delay_s=0)
        old, _ = await rt.keys.create("old-app", now=T0)
        fresh, _ = await rt.keys.create("new-app", now=T0 + 25 * DAY)
        capped, _ = await rt.keys.create("capped", now=T0, expires_in=5 * DAY)
        now = T0 + 26 * DAY
        soon = await service.expiring(7 * DAY, now=now)
        assert [(e.record.key_id, e.expires_at, e.by_max_age) for e in soon] == [
            (old.key_id, T0 + 30 * DAY, True)
        ]  # capped already expired; fresh has 29 days left
        stamped = await service.enforce_max_age(now=now)
        assert {r.key_id: r.expires_at for r in stamped} == {
            old.key_id: T0 + 30 * DAY,
            fresh.key_id: T0 + 55 * DAY,
        }
        assert await service.enforce_max_age(now=now) == []  # idempotent
        result = await service.rotate(old.key_id, now=now, grace=DAY)
        assert result.record.expires_at == now + 30 * DAY
        assert [e.record.key_id for e in await service.expiring(7 * DAY, now=now)] == []
        assert capped.key_id not in {r.key_id for r in await rt.keys.list(now=now)}
    finally:
        await rt.close()


async def test_a_leaked_key_is_rotated_without_grace(runtime: Runtime) -> None:
    record, leaked = await runtime.keys.create("billing", now=T0)
    result = await rotate_leaked_key(runtime, record.key_id, now=T0)
    stored = await runtime.keys.get(record.key_id)
    assert not runtime.keys.verify(stored, leaked, T0)
    assert runtime.keys.verify(stored, result.key, T0)
    assert stored.key_id == record.key_id
