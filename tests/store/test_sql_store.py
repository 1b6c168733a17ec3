"""One suite for every store backend (see conftest: SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

from keyguard.audit.partitions import is_partition
from keyguard.errors import ConfigurationError, StorageError
from keyguard.store import Store, open_store
from keyguard.store.base import KeyRecord, SealedSecret, SecretInfo
from keyguard.store.schema import VERSION_TABLE, metadata
from keyguard.store.sql import SQLStore

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def key(key_id: str = "AAAAAAAAAAA1", app: str = "billing-bot", **kw: object) -> KeyRecord:
    fields: dict[str, object] = {
        "key_id": key_id,
        "app": app,
        "digest": "ab" * 32,
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(kw)
    return KeyRecord(**fields)  # type: ignore[arg-type]


def secret(name: str = "upstream/east", version: int = 1, **kw: object) -> SealedSecret:
    fields: dict[str, object] = {
        "name": name,
        "version": version,
        "kek_id": "0123456789abcdef",
        "wrapped_dek": b"\x00wrapped\xff" * 4,
        "dek_nonce": b"n" * 12,
        "value_nonce": b"v" * 12,
        "ciphertext": b"\x00\x01ciphertext\xfe",
        "fingerprint": "f" * 64,
        "created_at": T0,
    }
    fields.update(kw)
    return SealedSecret(**fields)  # type: ignore[arg-type]


# -- opening and schema -----------------------------------------------------------------


async def test_schema_matches_migrations(store: Store) -> None:
    assert isinstance(store, SQLStore)

    def diff(conn: Connection) -> list[object]:
        opts = {
            "compare_type": True,
            "version_table": VERSION_TABLE,
            "include_name": lambda name, kind, _: kind != "table" or not is_partition(name),
        }
        context = MigrationContext.configure(conn, opts=opts)
        return list(compare_metadata(context, metadata))

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_reopening_is_idempotent(store_url: str) -> None:
    first = await open_store(store_url)
    await first.create_key(key())
    await first.close()
    second = await open_store(store_url)
    try:
        assert await second.get_key("AAAAAAAAAAA1") == key()
    finally:
        await second.close()


async def test_concurrent_first_opens_both_succeed(store_url: str) -> None:
    stores = await asyncio.gather(open_store(store_url), open_store(store_url))
    try:
        await stores[0].create_key(key())
        assert await stores[1].get_key("AAAAAAAAAAA1") is not None
    finally:
        for s in stores:
            await s.close()


async def test_new_sqlite_stores_opened_three_at_once_all_open(tmp_path: Path) -> None:
    # Switching a new file to WAL needs it to itself, and SQLite refuses at once (no busy
    # wait) while another opener holds it: without a retry about 1 open in 130 failed.
    for attempt in range(15):
        url = f"sqlite:///{tmp_path / str(attempt) / 'keyguard.db'}"
        opened = await asyncio.gather(*(open_store(url) for _ in range(3)), return_exceptions=True)
        failed = [repr(s) for s in opened if isinstance(s, BaseException)]
        for s in opened:
            if not isinstance(s, BaseException):
                await s.close()
        assert failed == []


# -- keys -------------------------------------------------------------------------------


async def test_key_round_trip_keeps_aware_utc_timestamps(store: Store) -> None:
    record = key(expires_at=T0 + timedelta(days=90), description="prod, team payments")
    await store.create_key(record)
    got = await store.get_key(record.key_id)
    assert got == record
    assert got is not None and got.created_at.tzinfo is not None
    assert got.created_at.utcoffset() == timedelta(0)


async def test_other_time_zones_are_stored_as_utc(store: Store) -> None:
    paris = timezone(timedelta(hours=1))
    await store.create_key(key(created_at=T0.astimezone(paris), updated_at=T0))
    got = await store.get_key("AAAAAAAAAAA1")
    assert got is not None
    assert got.created_at == T0 and got.created_at.utcoffset() == timedelta(0)


async def test_naive_timestamps_are_refused(store: Store) -> None:
    with pytest.raises(StorageError):
        await store.create_key(key(created_at=datetime(2025, 1, 1)))


async def test_unknown_key_is_none(store: Store) -> None:
    assert await store.get_key("nope") is None


async def test_duplicate_key_id_is_a_storage_error(store: Store) -> None:
    await store.create_key(key())
    with pytest.raises(StorageError, match="already exists"):
        await store.create_key(key(app="other"))


async def test_list_keys_filters_and_orders(store: Store) -> None:
    await store.create_key(key("AAAAAAAAAAA2", created_at=T0 + timedelta(seconds=2)))
    await store.create_key(key("AAAAAAAAAAA1", created_at=T0 + timedelta(seconds=1)))
    await store.create_key(key("AAAAAAAAAAA3", app="search"))
    await store.revoke_key("AAAAAAAAAAA2", T0 + timedelta(hours=1))

    ids = [r.key_id for r in await store.list_keys()]
    assert ids == ["AAAAAAAAAAA3", "AAAAAAAAAAA1"]
    ids = [r.key_id for r in await store.list_keys(include_revoked=True)]
    assert ids == ["AAAAAAAAAAA3", "AAAAAAAAAAA1", "AAAAAAAAAAA2"]
    ids = [r.key_id for r in await store.list_keys(app="billing-bot", include_revoked=True)]
    assert ids == ["AAAAAAAAAAA1", "AAAAAAAAAAA2"]
    assert await store.list_keys(app="nobody") == []


async def test_revoke_is_idempotent_and_bumps_updated_at(store: Store) -> None:
    await store.create_key(key())
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    first = await store.revoke_key("AAAAAAAAAAA1", t1)
    assert first is not None and first.revoked_at == t1 and first.updated_at == t1
    again = await store.revoke_key("AAAAAAAAAAA1", t2)
    assert again == first
    assert await store.revoke_key("nope", t1) is None


async def test_replace_key_is_compare_and_set(store: Store) -> None:
    record = KeyRecord("a" * 12, "app", "d" * 64, T0, T0)
    await store.create_key(record)
    later = T0 + timedelta(seconds=1)
    rotated = replace(
        record, digest="e" * 64, previous_digest="d" * 64, previous_valid_until=later,
        suspended_at=later, updated_at=later,
    )  # fmt: skip
    assert await store.replace_key(rotated, expected_updated_at=T0)
    assert await store.get_key(record.key_id) == rotated
    assert not await store.replace_key(record, expected_updated_at=T0)  # stale: refused
    assert await store.get_key(record.key_id) == rotated
    ghost = replace(record, key_id="b" * 12)
    assert not await store.replace_key(ghost, expected_updated_at=T0)


async def test_keys_changed_since(store: Store) -> None:
    await store.create_key(key("AAAAAAAAAAA1"))
    await store.create_key(key("AAAAAAAAAAA2"))
    assert [r.key_id for r in await store.keys_changed_since(T0 - timedelta(seconds=1))] == [
        "AAAAAAAAAAA1",
        "AAAAAAAAAAA2",
    ]
    assert await store.keys_changed_since(T0) == []
    await store.revoke_key("AAAAAAAAAAA2", T0 + timedelta(minutes=5))
    changed = await store.keys_changed_since(T0)
    assert [r.key_id for r in changed] == ["AAAAAAAAAAA2"]


# -- vault secrets ----------------------------------------------------------------------


async def test_secret_round_trip_latest_and_by_version(store: Store) -> None:
    v1 = secret(version=1)
    v2 = secret(version=2, ciphertext=b"second", created_at=T0 + timedelta(days=1))
    await store.put_secret(v1)
    await store.put_secret(v2)
    assert await store.get_secret("upstream/east") == v2
    assert await store.get_secret("upstream/east", 1) == v1
    assert await store.get_secret("upstream/east", 3) is None
    assert await store.get_secret("upstream/west") is None


async def test_conflicting_version_is_a_storage_error(store: Store) -> None:
    await store.put_secret(secret())
    with pytest.raises(StorageError, match="version 1 already exists"):
        await store.put_secret(secret(ciphertext=b"other"))
    with pytest.raises(StorageError):
        await store.put_secret(secret(version=0))


async def test_concurrent_puts_of_one_version_let_exactly_one_win(store_url: str) -> None:
    a, b = await open_store(store_url), await open_store(store_url)
    try:
        results = await asyncio.gather(
            *(s.put_secret(secret(ciphertext=bytes([i]) * 8)) for i, s in enumerate([a, b, a, b])),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 3 and all(isinstance(e, StorageError) for e in errors)
        winner = results.index(None)
        got = await a.get_secret("upstream/east")
        assert got is not None and got.ciphertext == bytes([winner]) * 8
    finally:
        await a.close()
        await b.close()


async def test_list_secrets_shows_latest_versions_only(store: Store) -> None:
    await store.put_secret(secret("b/one", 1))
    await store.put_secret(secret("b/one", 2, kek_id="fedcba9876543210"))
    await store.put_secret(secret("a/two", 1))
    assert await store.list_secrets() == [
        SecretInfo("a/two", 1, "0123456789abcdef", T0),
        SecretInfo("b/one", 2, "fedcba9876543210", T0),
    ]


# -- errors -----------------------------------------------------------------------------


async def test_driver_errors_become_storage_errors_without_sql(store: Store) -> None:
    assert isinstance(store, SQLStore)
    async with store.engine.begin() as conn:
        await conn.execute(text("DROP TABLE vault_secrets"))
    with pytest.raises(StorageError) as info:
        await store.put_secret(replace(secret(), ciphertext=b"TOPSECRETBYTES"))
    message = str(info.value)
    assert message.startswith("store: put secret failed")
    assert "INSERT" not in message and "TOPSECRET" not in message


# -- backend selection and SQLite specifics (not parametrized) ----------------------------


@pytest.mark.parametrize("url", ["mysql://db/keyguard", "redis://localhost", "memory://"])
async def test_unknown_scheme_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown URL scheme"):
        await open_store(url)


async def test_malformed_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown URL scheme"):
        await open_store("not a url")


async def test_unreachable_postgres_hides_the_password() -> None:
    with pytest.raises(StorageError) as info:
        await open_store("postgresql://keyguard:hunter2@127.0.0.1:1/keyguard")
    message = str(info.value)
    assert message.startswith("cannot open store postgresql://keyguard:***@127.0.0.1:1/keyguard")
    assert "hunter2" not in message


async def test_sqlite_file_settings(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "keyguard.db"
    store = await open_store(f"sqlite:///{path}")
    assert isinstance(store, SQLStore)
    try:
        async with store.engine.connect() as conn:
            pragmas = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        await store.close()
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_sqlite_in_memory(tmp_path: Path) -> None:
    store = await open_store("sqlite:///:memory:")
    try:
        await store.create_key(key())
        assert await store.get_key("AAAAAAAAAAA1") == key()
    finally:
        await store.close()


async def test_a_schema_from_a_newer_keyguard_is_refused(store_url: str) -> None:
    store = await open_store(store_url)
    assert isinstance(store, SQLStore)
    async with store.engine.begin() as conn:
        await conn.execute(text(f"DELETE FROM {VERSION_TABLE}"))
        await conn.execute(text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('9999')"))
    await store.close()
    with pytest.raises(StorageError, match="newer Keyguard"):
        await open_store(store_url)
