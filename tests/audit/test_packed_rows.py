"""Records kept packed in the store, on SQLite and PostgreSQL: written packed, read back as the
canonical JSON that was hashed; a packed value damaged or swapped by someone with the store is
found by verify (and the export still reads); a row written before, its text in ``data``, still
reads; migration 0009 goes down (every text written back) and up again."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.audit import store as store_module
from keyguard.audit.export import export_lines, verify_store
from keyguard.audit.rows import pack_all as pack_all_rows
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.store import PACK_SLICE, AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.store.packing import pack
from keyguard.store.sql import MIGRATIONS, migrate

SIGNER = Signer(Ed25519PrivateKey.generate())
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))


async def _write(audit: AuditStore, n: int) -> str:
    writer = AuditWriter(audit, AuditSettings(), signer=SIGNER, clock=time.time)
    for i in range(n):
        writer.append("request", {"i": i, "status": 200, "text": "é ✓ " * i})
    await writer.close()
    return writer.id


async def _rows(engine: AsyncEngine, sql: str, **params: Any) -> Sequence[Any]:
    async with engine.begin() as conn:
        result = await conn.execute(text(sql), params)
        return result.all() if result.returns_rows else []


async def test_records_are_stored_packed_and_read_as_they_were_hashed(
    engine: AsyncEngine,
) -> None:
    audit = AuditStore(engine)
    chain = await _write(audit, 5)
    rows = await _rows(engine, "SELECT data, packed FROM audit_records WHERE chain = :c", c=chain)
    assert len(rows) == 7 and all(data == "" and packed for data, packed in rows)
    records = [r async for r in audit.records(chain=chain)]
    assert [bytes(p) for _, p in rows] == [pack(r.data) for r in records]
    assert all(r.intact() for r in records)
    report = await verify_store(audit, CHECK)
    assert report.ok and report.records == 7, report.problems


async def test_a_damaged_or_swapped_packed_value_is_found(engine: AsyncEngine) -> None:
    audit = AuditStore(engine)
    chain = await _write(audit, 5)
    await _rows(engine, "UPDATE audit_records SET packed = :p WHERE chain = :c AND seq = 3",
                p=b"\x01garbage", c=chain)  # fmt: skip
    swapped = pack('{"i":1,"status":500,"text":"é ✓ "}')  # a well-formed value, other content
    await _rows(engine, "UPDATE audit_records SET packed = :p WHERE chain = :c AND seq = 4",
                p=swapped, c=chain)  # fmt: skip
    await _rows(
        engine,
        "UPDATE audit_records SET packed = :p WHERE chain = :c AND seq = 5",
        p=b"\x07" + swapped[1:],
        c=chain,
    )  # a format this version does not know
    report = await verify_store(audit, CHECK)
    problems = "\n".join(report.problems)
    for seq in (3, 4, 5):
        assert f"record {seq}: its content does not match its hash (edited)" in problems
    lines = [line async for line in export_lines(audit, None)]  # still exported, as unreadable
    assert sum('"unreadable"' in line for line in lines) == 2


async def test_a_row_with_its_text_in_data_still_reads(engine: AsyncEngine) -> None:
    audit = AuditStore(engine)
    chain = await _write(audit, 3)
    records = [r async for r in audit.records(chain=chain)]
    for r in records:  # as written before 0009
        await _rows(engine, "UPDATE audit_records SET data = :d, packed = NULL "
                    "WHERE chain = :c AND seq = :s", d=r.data, c=chain, s=r.seq)  # fmt: skip
    assert [r async for r in audit.records(chain=chain)] == records
    assert (await verify_store(audit, CHECK)).ok


def _down(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    command.downgrade(config, "0008")


async def test_the_migration_goes_down_with_every_text_and_up_again(engine: AsyncEngine) -> None:
    audit = AuditStore(engine)
    chain = await _write(audit, 4)
    records = [r async for r in audit.records(chain=chain)]
    async with engine.begin() as conn:
        await conn.run_sync(_down)
    texts = await _rows(engine, "SELECT data FROM audit_records WHERE chain = :c ORDER BY seq",
                        c=chain)  # fmt: skip
    assert [t for (t,) in texts] == [r.data for r in records]
    await migrate(engine)
    assert [r async for r in audit.records(chain=chain)] == records
    assert (await verify_store(audit, CHECK)).ok


async def test_a_batch_is_packed_on_the_loop_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Packing runs on the event loop's own thread (a worker thread would take the GIL back
    from the busy loop once a record), a slice at a time with the loop free in between: a
    large batch does not hold up the requests being served."""
    threads: set[int] = set()
    real = pack_all_rows

    def pack_all(items: Sequence[tuple[str, str, str]]) -> list[bytes]:
        threads.add(threading.get_ident())
        return real(items)

    monkeypatch.setattr(store_module, "pack_all", pack_all)
    items = [("t", "request", f'{{"i":{i}}}') for i in range(3 * PACK_SLICE + 1)]
    turns = 0

    async def other() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    await asyncio.sleep(0)
    before = turns
    packed = await store_module._pack_yielding(items)
    task.cancel()
    assert packed == [pack(data) for _, _, data in items]
    assert threads == {threading.get_ident()}
    assert turns - before >= 3  # one turn of the loop between each two of the four slices
