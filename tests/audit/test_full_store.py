"""A full disk under the audit store: SQLite answering "database or disk is full" (a database
capped with ``max_page_count``, what a full file system gives it). Nothing queued is lost or
silently dropped: the failed batch stays queued, the queue's lag grows, the queue reports full
at 90 % (the gateway then refuses requests, ``on_full: refuse``; see test_unaudited), records
past ``max_queue`` are dropped and counted; once there is room again everything queued is
written and the chain verifies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import event, text

from keyguard.audit.export import verify_store
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.errors import StorageError
from keyguard.store import open_store

SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))
NOW = 1_800_000_000.0


async def test_a_full_disk_keeps_records_queued_and_loses_none(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'k.db'}")
    engine: Any = store.engine  # type: ignore[attr-defined]
    cap: dict[str, int] = {"pages": 1_000_000}

    @event.listens_for(engine.sync_engine, "connect")
    def _capped(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA max_page_count = {cap['pages']}")
        cursor.close()

    clock = [NOW]
    writer = AuditWriter(
        AuditStore(engine), AuditSettings(max_queue=1000), signer=SIGNER, clock=lambda: clock[0]
    )
    for i in range(10):
        writer.append("request", {"i": i, "pad": "x" * 800})
    assert await writer.flush() == 10
    async with engine.connect() as conn:
        used = (await conn.execute(text("PRAGMA page_count"))).scalar_one()
    cap["pages"] = used + 2  # the disk is full: a few pages left
    await engine.dispose()

    for i in range(10, 960):
        writer.append("request", {"i": i, "pad": "x" * 800})
    clock[0] += 30
    with pytest.raises(StorageError, match="full"):
        await writer.flush()
    assert writer.queued == 950 and writer.full  # kept, and at 90 %: the gateway refuses
    assert writer.lag() == pytest.approx(30)
    await writer.tick()  # the loop logs and counts; it never raises
    assert writer.failures == 1 and writer.queued == 950
    for i in range(960, 1100):  # past max_queue: dropped, and counted
        writer.append("request", {"i": i, "pad": "x" * 800})
    assert writer.queued == 1000 and writer.dropped == 90

    cap["pages"] = 1_000_000  # room again
    await engine.dispose()
    await writer.tick()
    assert writer.queued == 0 and writer.lag() == 0 and not writer.full
    await writer.close()
    audit = AuditStore(engine)
    report = await verify_store(audit, CHECK)
    assert report.ok, report.problems
    written = [r async for r in audit.records(chain=writer.id) if r.kind == "request"]
    assert len(written) == 1010  # every record not counted as dropped
    await store.close()
