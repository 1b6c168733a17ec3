"""Writers in separate processes, as replicas are, on SQLite and PostgreSQL: each appends to
its own chain at the same time, none waits for another's lock (on PostgreSQL), and the whole
trail verifies as one, every chain named by the head sets; one writer killed before it closes
shows as a note, and its chain cut afterwards is named."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from keyguard.audit.export import verify_store
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.store import Store, open_store

SEED = bytes(range(32))
SIGNER = Signer(Ed25519PrivateKey.from_private_bytes(SEED))
CHECK = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))
RECORDS = 300


async def _write(url: str, n: int, crash: bool) -> str:
    store = await open_store(url)
    engine = store.engine  # type: ignore[attr-defined]
    settings = AuditSettings(batch_size=25, checkpoint_interval_s=0.05)
    writer = AuditWriter(AuditStore(engine), settings, signer=SIGNER)
    await writer.open()
    for i in range(RECORDS):
        writer.append("request", {"writer": n, "i": i})
        if i % 50 == 49:
            await writer.tick()
            await asyncio.sleep(0.06)  # a head set on every other pass
    await writer.tick()
    if crash:  # what kill -9 leaves: records committed, the chain never closed
        os.kill(os.getpid(), signal.SIGKILL)
    await writer.close()
    await store.close()
    return writer.id


def write_in_process(url: str, n: int, crash: bool = False) -> str:
    return asyncio.run(_write(url, n, crash))


async def test_writer_processes_keep_their_chains_and_verify_as_one(
    store: Store, store_url: str
) -> None:
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=context) as pool:
        loop = asyncio.get_running_loop()
        ids = await asyncio.gather(
            *(loop.run_in_executor(pool, write_in_process, store_url, n) for n in range(3))
        )
    assert time.perf_counter() - started < 120
    audit = AuditStore(store.engine)  # type: ignore[attr-defined]
    chains = await audit.chains()
    assert {c: p.seq for c, p in chains.items()} == {i: RECORDS + 2 for i in ids}
    report = await verify_store(audit, CHECK)
    assert report.ok and report.chains == 3 and report.records == 3 * (RECORDS + 2), report
    assert report.head_sets >= 3 and report.notes == []


async def test_a_killed_writer_shows_and_its_cut_chain_is_named(
    store: Store, store_url: str
) -> None:
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=write_in_process, args=(store_url, 0, True))
    process.start()
    await asyncio.to_thread(process.join, 120)
    assert process.exitcode == -signal.SIGKILL
    write_other = asyncio.to_thread(write_in_process, store_url, 1)  # a replica still running
    survivor = await write_other
    audit = AuditStore(store.engine)  # type: ignore[attr-defined]
    [killed] = [c for c in await audit.chains() if c != survivor]
    report = await verify_store(audit, CHECK)
    assert report.ok, report.problems
    assert any(f"writer {killed}" in note and "was not closed" in note for note in report.notes)
    async with store.engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(
            text("DELETE FROM audit_records WHERE chain = :c AND seq > 100"), {"c": killed}
        )
        await conn.execute(
            text("DELETE FROM audit_checkpoints WHERE chain = :c AND seq > 100"), {"c": killed}
        )
    report = await verify_store(audit, CHECK)
    assert not report.ok
    assert any(
        f"writer {killed}: the head set" in p and "past the end of the chain (seq 100)" in p
        for p in report.problems
    ), report.problems
