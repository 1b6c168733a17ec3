"""Bytes per audit record in SQLite and PostgreSQL, everything counted (rows, indexes,
checkpoints, head sets), for records shaped like the gateway's request records.

    .venv/bin/python bench/audit/size.py                      # 20,000 records in each store
    .venv/bin/python bench/audit/size.py --records 50000 --url postgresql://...
    .venv/bin/python bench/audit/size.py --varied             # records less alike

``--varied``: each record's app, key, deployment, operation, client address, user agent,
token counts, latencies and cost drawn at random from a few values each (bench/run's records
differ only in their request id, which flatters any compression).

One writer flushes every 0.2 s at 1,000 records/s (batches of 200, each with its checkpoint;
a head set every 10 s of record time), as a gateway replica at that rate would. SQLite: the
file after a checkpoint of its WAL (``page_count × page_size``); PostgreSQL:
``pg_total_relation_size`` of the three audit tables (every partition) after ``VACUUM``. A
fresh SQLite file and a fresh PostgreSQL database are used, and removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
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
_APPS = ("billing", "search", "support-bot", "etl-nightly", "copilot")
_AGENTS = ("OpenAI/Python 1.54.0", "AsyncOpenAI/Python 1.40.2", "AzureOpenAI/JS 4.70.0")
_MODELS = (("chat", "gpt-4o"), ("chat", "gpt-4o-mini"), ("embeddings", "text-embedding-3-small"),
           ("responses", "gpt-4o"))  # fmt: skip


def varied(i: int, at: float, rng: random.Random) -> dict[str, object]:
    """:func:`record` with its values drawn from a few each (``--varied``)."""
    item = record(i, at)
    operation, deployment = rng.choice(_MODELS)
    item.update(
        app=rng.choice(_APPS), key_id=f"KEY{rng.randrange(16**9):09X}", operation=operation,
        deployment=deployment, user_agent=rng.choice(_AGENTS),
        source=f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        prompt_tokens=rng.randrange(1, 4000), completion_tokens=rng.randrange(0, 900),
        latency_ms=round(rng.uniform(20, 3000), 1), upstream_ms=round(rng.uniform(15, 2900), 1),
        cost=round(rng.uniform(0, 0.05), 6),
    )  # fmt: skip
    return item


TABLES = ("audit_records", "audit_checkpoints", "audit_heads")
_SIZE = (  # a table, or a partitioned one with its partitions
    "SELECT pg_total_relation_size('{t}') + coalesce((SELECT sum(pg_total_relation_size(relid))"
    " FROM pg_partition_tree('{t}') WHERE relid <> '{t}'::regclass), 0)"
)


async def _fill(url: str, driver: str, n: int, vary: bool) -> tuple[int, int]:
    """Write ``n`` records; return (their JSON bytes, the store's bytes)."""
    engine = create_engine(url, driver)
    await migrate(engine)
    clock = [T0]
    settings = AuditSettings(checkpoint_interval_s=10)
    writer = AuditWriter(AuditStore(engine), settings, signer=Signer(
        Ed25519PrivateKey.generate()), clock=lambda: clock[0])  # fmt: skip
    data = 0
    rng = random.Random(7)
    for i in range(n):
        item = varied(i, clock[0], rng) if vary else record(i, clock[0])
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
                total += (await conn.execute(text(_SIZE.format(t=table)))).scalar_one()
    await engine.dispose()
    return data, total


async def _postgres(admin: str, n: int, vary: bool) -> tuple[int, int]:
    name = f"keyguard_size_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        url = make_url(admin).set(database=name).render_as_string(hide_password=False)
        return await _fill(url, "postgresql+asyncpg", n, vary)
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--url", default=DEFAULT_URL, help="PostgreSQL (a database is created)")
    parser.add_argument("--varied", action="store_true", help="records less alike (see above)")
    args = parser.parse_args()
    n = args.records
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "audit.db")
        sqlite = asyncio.run(_fill(f"sqlite:///{db}", "sqlite+aiosqlite", n, args.varied))
    postgres = asyncio.run(_postgres(args.url, n, args.varied))
    print(f"{n:,} request records, {sqlite[0] / n:,.0f} bytes of JSON each on average")
    print("| store | bytes per record, all included | of which the record's JSON |")
    print("|---|---:|---:|")
    for name, (data, total) in (("SQLite", sqlite), ("PostgreSQL", postgres)):
        print(f"| {name} | {total / n:,.0f} | {data / n:,.0f} |")


if __name__ == "__main__":
    main()
