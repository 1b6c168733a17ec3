"""Migration 0007 on a log written before it (one chain shared by every writer): every old
record and checkpoint is kept as it was and still verifies; writers after it keep chains of
their own beside it; an edit of an old record is still found."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.config import Config
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, text

from keyguard.audit.chain import START, canonical, chain
from keyguard.audit.export import verify_store
from keyguard.audit.segments import KIND, close_data, open_data
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.store.sql import MIGRATIONS, create_engine, migrate

SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))
DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def _upgrade_to_0006(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    command.upgrade(config, "0006")


def _stored(at: str, sqlite: bool) -> object:
    when = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return when.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else when


async def test_a_log_of_one_shared_chain_still_verifies_after_the_migration(
    store_url: str,
) -> None:
    sqlite = store_url.startswith("sqlite")
    if sqlite:
        from pathlib import Path

        Path(store_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(store_url, DRIVERS["sqlite" if sqlite else "postgresql"])
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_to_0006)
        # two writers of an earlier version, one after the other, in the one shared chain
        t = "2026-11-30T10:00:0{}.000000Z"
        first = list(chain(1, START.hash, [
            (t.format(0), KIND, canonical(open_data("A", START, []))),
            (t.format(1), "admin", canonical({"action": "keys.create"})),
            (t.format(2), KIND, canonical(close_data("A", 3))),
        ]))  # fmt: skip
        second = list(chain(4, first[-1].hash, [
            (t.format(3), KIND, canonical(open_data("B", first[-1].position, []))),
            (t.format(4), "request", canonical({"status": 200})),
        ]))  # fmt: skip
        legacy = first + second
        seals = [
            SIGNER.sign(3, first[-1].hash, t.format(3)),
            SIGNER.sign(5, legacy[-1].hash, t.format(5)),
        ]
        async with engine.begin() as conn:
            for r in legacy:
                await conn.execute(
                    text(
                        "INSERT INTO audit_records (seq, created_at, kind, data, prev_hash, hash)"
                        " VALUES (:seq, :at, :kind, :data, :prev, :hash)"
                    ),
                    {"seq": r.seq, "at": _stored(r.created, sqlite), "kind": r.kind,
                     "data": r.data, "prev": r.prev_hash, "hash": r.hash},
                )  # fmt: skip
            for cp in seals:
                await conn.execute(
                    text(
                        "INSERT INTO audit_checkpoints (seq, hash, created_at, key_id, "
                        "signature) VALUES (:seq, :hash, :at, :key_id, :sig)"
                    ),
                    {"seq": cp.seq, "hash": cp.hash, "at": _stored(cp.created, sqlite),
                     "key_id": cp.key_id, "sig": cp.signature},
                )  # fmt: skip
        await migrate(engine)  # 0007: a chain per writer
        store = AuditStore(engine)
        kept = [r async for r in store.records(chain="")]
        assert kept == legacy  # every old record as it was, in the shared chain ""
        report = await verify_store(store, CHECK)
        assert report.ok and report.records == 5 and report.chains == 1, report.problems

        writer = AuditWriter(store, AuditSettings(), signer=SIGNER)
        writer.append("admin", {"action": "keys.revoke"}, at=datetime.now(UTC).timestamp())
        await writer.close()
        report = await verify_store(store, CHECK)
        assert report.ok and report.records == 8 and report.chains == 2, report.problems
        assert set(await store.chains()) == {"", writer.id}

        async with engine.begin() as conn:
            await conn.execute(text("UPDATE audit_records SET data = '{}' WHERE chain = '' "
                                    "AND seq = 2"))  # fmt: skip
        report = await verify_store(store, CHECK)
        assert not report.ok
        assert "record 2: its content does not match its hash (edited)" in report.problems[0]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("chain_name", ["", "0123456789abcdef"])
def test_hashes_of_the_shared_chain_are_unchanged_and_a_writers_differ(chain_name: str) -> None:
    from keyguard.audit.chain import link

    before = link(1, "t", "admin", "0" * 64, "{}")  # the formula the shared chain was hashed by
    import hashlib

    assert before == hashlib.sha256(b"1\nt\nadmin\n" + b"0" * 64 + b"\n{}").hexdigest()
    assert (link(1, "t", "admin", "0" * 64, "{}", chain_name) == before) == (chain_name == "")
