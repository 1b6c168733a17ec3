"""Audit records per second into PostgreSQL against the number of concurrent writer processes.

    .venv/bin/python bench/audit/writers.py                       # 1, 2, 4, 8, 16 writers
    .venv/bin/python bench/audit/writers.py --writers 1 4 --duration 5 --rate 1000
    .venv/bin/python bench/audit/writers.py --shared-lock         # also: one lock for all

Each writer is a process with its own :class:`~keyguard.audit.writer.AuditWriter`, as a
gateway replica has: every ``flush_interval_s`` (0.2 s) it queues ``rate × 0.2`` request
records shaped like the gateway's (about 600 bytes of JSON) and flushes them: one transaction
per batch with its signed checkpoint, into its own chain; every ``checkpoint_interval_s`` a
signed head set. Per writer count it reports the records committed per second in all (against
the rate offered), the time of one batch's transaction (median, 99th percentile) and the time a
batch waited for a lock. ``--shared-lock`` runs the same load the way earlier versions wrote
(one chain: every batch takes ``pg_advisory_xact_lock`` on the chain's head first), for
comparison. Each run uses a fresh database, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import statistics
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import make_url

from keyguard.audit.chain import START, Appended, Link, Position, chain
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.store.schema import audit_checkpoints, audit_records
from keyguard.store.sql import create_engine, migrate

DEFAULT_URL = os.environ.get("KEYGUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test")
_LOCK = 0x6B67617564  # the id earlier versions locked the chain's head with


def record(i: int, at: float) -> dict[str, Any]:
    """A request record shaped like the gateway's (bench/run's traffic)."""
    return {
        "request_id": secrets.token_hex(8), "key_id": "KEYAAAAAAAA1", "app": "billing",
        "operation": "chat", "deployment": "gpt-4o", "api_version": "2024-10-21",
        "decision": "allow", "reason": "ok", "status": 200, "upstream_status": 200,
        "prompt_tokens": 180 + i % 7, "completion_tokens": 42, "cached_tokens": 0,
        "latency_ms": 41.5, "upstream_ms": 38.2, "source": f"10.0.{i % 4}.17",
        "network": "10.0.0.0/16", "user_agent": "OpenAI/Python 1.54.0",
        "client": "python/3.11 openai/1.54.0 linux x64", "stream": False, "max_tokens": 256,
        "temperature": 0.2, "seed": None, "empty_prompt": False, "cost": 0.00093, "at": at,
    }  # fmt: skip


class Timed(AuditStore):
    """Times each append (one batch's transaction) and, with ``shared``, takes the one lock
    every writer took in earlier versions, timing the wait for it."""

    def __init__(self, engine: Any, shared: bool) -> None:
        super().__init__(engine)
        self.shared = shared
        self.batches: list[float] = []
        self.waits: list[float] = []

    async def append(self, items: Sequence[tuple[str, str, str]], link: Link) -> Appended:
        started = time.perf_counter()
        done = await (self._locked(items, link) if self.shared else super().append(items, link))
        self.batches.append(time.perf_counter() - started)
        return done

    async def _locked(self, items: Sequence[tuple[str, str, str]], link: Link) -> Appended:
        from keyguard.audit.rows import checkpoint_row, record_row

        async with self._engine.begin() as conn:
            waited = time.perf_counter()
            await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK})")
            self.waits.append(time.perf_counter() - waited)
            row = (await conn.exec_driver_sql(
                "SELECT seq, hash FROM audit_records WHERE chain = '' ORDER BY seq DESC LIMIT 1"
            )).first()  # fmt: skip
            head = Position(int(row[0]), str(row[1])) if row is not None else START
            records = list(chain(head.seq + 1, head.hash, items))
            cp = link.seal(records[-1])
            await conn.execute(audit_records.insert(), [record_row(r) for r in records])
            await conn.execute(audit_checkpoints.insert().values(**checkpoint_row(cp)))
        return Appended(records, [cp])


async def _writer(url: str, seed: bytes, rate: int, duration: float, shared: bool,
                  ready: Any) -> dict[str, Any]:  # fmt: skip
    engine = create_engine(url, "postgresql+asyncpg")
    store = Timed(engine, shared)
    # with the shared lock every record goes to the one chain: no head sets (they name chains)
    interval = 1e9 if shared else 2.0
    settings = AuditSettings(flush_interval_s=0.2, checkpoint_interval_s=interval)
    writer = AuditWriter(store, settings, signer=Signer(Ed25519PrivateKey.from_private_bytes(seed)))
    await writer.open()
    store.batches.clear()
    per_tick = max(1, round(rate * settings.flush_interval_s))
    await asyncio.to_thread(ready.wait)  # every writer open: start together
    start = time.time()
    cpu0, written0, i = time.process_time(), writer.written, 0
    tick = start
    while time.time() < start + duration:
        for _ in range(per_tick):
            writer.append("request", record(i, tick), at=tick)
            i += 1
        await writer.tick()
        tick += settings.flush_interval_s
        await asyncio.sleep(max(0.0, tick - time.time()))
    elapsed = time.time() - start
    result = {
        "written": writer.written - written0, "offered": i, "elapsed": elapsed,
        "backlog": writer.queued, "batches": store.batches, "waits": store.waits,
        "cpu_s": time.process_time() - cpu0, "head_sets": writer.head_sets,
    }  # fmt: skip
    if shared:
        writer._closed = True  # noqa: SLF001 - no closing head set naming a chain it never had
    await writer.close()
    await engine.dispose()
    return result


def _process(args: tuple[str, bytes, int, float, bool], ready: Any, out: Any) -> None:
    out.put(asyncio.run(_writer(*args, ready)))


async def _database(admin: str, name: str, create: bool) -> None:
    conn = await asyncpg.connect(admin)
    try:
        if create:
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    engine = create_engine(url, "postgresql+asyncpg")
    await migrate(engine)
    await engine.dispose()


def run(admin: str, writers: int, rate: int, duration: float, shared: bool) -> dict[str, Any]:
    name = f"keyguard_bench_{secrets.token_hex(4)}"
    asyncio.run(_database(admin, name, True))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        asyncio.run(_migrate(url))
        seed = os.urandom(32)
        context = multiprocessing.get_context("spawn")
        ready, out = context.Barrier(writers), context.Queue()
        job = (url, seed, rate, duration, shared)
        processes = [
            context.Process(target=_process, args=(job, ready, out)) for _ in range(writers)
        ]
        for process in processes:
            process.start()
        results = [out.get(timeout=300) for _ in processes]
        for process in processes:
            process.join(30)
    finally:
        asyncio.run(_database(admin, name, False))
    batches = sorted(b for r in results for b in r["batches"])
    waits = sorted(w for r in results for w in r["waits"]) or [float("nan")]  # nan: no lock
    elapsed = max(r["elapsed"] for r in results)
    return {
        "writers": writers, "mode": "shared lock" if shared else "own chains",
        "offered_per_s": sum(r["offered"] for r in results) / elapsed,
        "written_per_s": sum(r["written"] for r in results) / elapsed,
        "backlog": sum(r["backlog"] for r in results),
        "batch_p50_ms": 1000 * statistics.median(batches),
        "batch_p99_ms": 1000 * batches[int(0.99 * (len(batches) - 1))],
        "wait_p50_ms": 1000 * statistics.median(waits),
        "wait_p99_ms": 1000 * waits[int(0.99 * (len(waits) - 1))],
        "cpu_ms_per_record": 1000 * sum(r["cpu_s"] for r in results)
        / max(1, sum(r["written"] for r in results)),
    }  # fmt: skip


def _wait(r: dict[str, Any]) -> str:
    if r["wait_p50_ms"] != r["wait_p50_ms"]:  # nan
        return "no lock"
    return f"{r['wait_p50_ms']:.2f} / {r['wait_p99_ms']:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="PostgreSQL (a database is created)")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--rate", type=int, default=1000, help="records/s offered per writer")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--shared-lock", action="store_true", help="also the earlier way")
    parser.add_argument("--json", help="append each result as a JSON line to this file")
    args = parser.parse_args()
    modes = [False, True] if args.shared_lock else [False]
    print("| writers | mode | offered rec/s | committed rec/s | backlog | batch p50 / p99 ms "
          "| lock wait p50 / p99 ms | writer CPU ms/record |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for n in args.writers:
        for shared in modes:
            r = run(args.url, n, args.rate, args.duration, shared)
            print(f"| {n} | {r['mode']} | {r['offered_per_s']:,.0f} | {r['written_per_s']:,.0f} "
                  f"| {r['backlog']:,} | {r['batch_p50_ms']:.1f} / {r['batch_p99_ms']:.1f} "
                  f"| {_wait(r)} "
                  f"| {r['cpu_ms_per_record']:.3f} |", flush=True)  # fmt: skip
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
