"""Bytes per audit record in SQLite and PostgreSQL, everything counted (rows, indexes,
checkpoints, head sets), for records shaped like the gateway's request records.

    .venv/bin/python bench/audit/size.py                      # 20,000 records in each store
    .venv/bin/python bench/audit/size.py --records 50000 --url postgresql://...

One writer flushes every 0.2 s at 1,000 records/s (batches of 200, each with its checkpoint;
a head set every 10 s of record time), as a gateway replica at that rate would. SQLite: the
file after a checkpoint of its WAL (``page_count × page_size``); PostgreSQL:
``pg_total_relation_size`` of the three audit tables after ``VACUUM``. A fresh SQLite file and
a fresh PostgreSQL database are used, and removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.engine import make_url

from keyguard.audit.chain import canonical
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.store.sql import create_engine, migrate

sys.path.insert(0, str(Path(__file__).parent))
from writers import DEFAULT_URL, record  # noqa: E402

T0 = 1_800_000_000.0
TABLES = ("audit_records", "audit_checkpoints", "audit_heads")


async def _fill(url: str, driver: str, n: int) -> tuple[int, int]:
    """Write ``n`` records; return (their JSON bytes, the store's bytes)."""
    engine = create_engine(url, driver)
    await migrate(engine)
    clock = [T0]
    settings = AuditSettings(checkpoint_interval_s=10)
    writer = AuditWriter(AuditStore(engine), settings, signer=Signer(
        Ed25519PrivateKey.generate()), clock=lambda: clock[0])  # fmt: skip
    data = 0
    for i in range(n):
        item = record(i, clock[0])
        data += len(canonical(item))
        writer.append("request", item, at=clock[0])
        if i % 200 == 199:
            clock[0] += 0.2
            await writer.tick()
    await writer.close()
    async with engine.connect() as conn:
        if driver.startswith("sqlite"):
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()
            size = (await conn.exec_driver_sql("PRAGMA page_size")).scalar_one()
            total = pages * size  # the whole file: the other tables are small and empty
        else:
            await conn.commit()
            raw = await conn.get_raw_connection()
            await raw.driver_connection.execute("VACUUM ANALYZE")  # type: ignore[union-attr]
            total = 0
            for table in TABLES:
                total += (
                    await conn.execute(text(f"SELECT pg_total_relation_size('{table}')"))
                ).scalar_one()
    await engine.dispose()
    return data, total


async def _postgres(admin: str, n: int) -> tuple[int, int]:
    name = f"keyguard_size_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        url = make_url(admin).set(database=name).render_as_string(hide_password=False)
        return await _fill(url, "postgresql+asyncpg", n)
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--url", default=DEFAULT_URL, help="PostgreSQL (a database is created)")
    args = parser.parse_args()
    n = args.records
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "audit.db")
        sqlite = asyncio.run(_fill(f"sqlite:///{db}", "sqlite+aiosqlite", n))
    postgres = asyncio.run(_postgres(args.url, n))
    print(f"{n:,} request records, {sqlite[0] / n:,.0f} bytes of JSON each on average")
    print("| store | bytes per record, all included | of which the record's JSON |")
    print("|---|---:|---:|")
    for name, (data, total) in (("SQLite", sqlite), ("PostgreSQL", postgres)):
        print(f"| {name} | {total / n:,.0f} | {data / n:,.0f} |")


if __name__ == "__main__":
    main()
