"""``keyguard audit export`` over several writers' chains, on SQLite and PostgreSQL: every line
(records, checkpoints, head sets) comes in the order of its time, the writers' records
interleaved as they were written, and ``keyguard audit verify --file`` passes on the export, on
a part of it cut by ``--since``, and fails on one with a record edited."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from click.testing import CliRunner, Result

from keyguard.audit.rows import iso_at
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import load_signer
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.cli.main import cli
from keyguard.config import load_settings
from keyguard.store import open_store
from keyguard.wiring.runtime import open_runtime
from tests.support.settings import keyguard_config, write_config

WRITERS = 3
RECORDS = 24


async def _write(config: Path, start: float) -> list[str]:
    """Three writers whose records and flushes interleave in time; their chain ids."""
    settings = load_settings(str(config))
    rt = await open_runtime(settings, {})
    try:
        signer = await load_signer(rt.vault)
    finally:
        await rt.close()
    store = await open_store(settings.store)
    audit = AuditStore(store.engine)  # type: ignore[attr-defined]
    clock = [start]
    writers = [
        AuditWriter(
            audit, AuditSettings(checkpoint_interval_s=0.05), signer=signer, clock=lambda: clock[0]
        )  # fmt: skip
        for _ in range(WRITERS)
    ]
    try:
        for i in range(RECORDS):
            for w, writer in enumerate(writers):
                clock[0] = start + i * 0.01 + w * 0.001
                writer.append("request", {"i": i, "writer": w, "status": 200})
                if i % 4 == 3:  # each writer's batch and checkpoint, one after the other's
                    await writer.tick()
        for writer in writers:
            clock[0] += 0.001
            await writer.close()
    finally:
        await store.close()
    return [w.id for w in writers]


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


async def test_an_export_of_several_writers_is_in_time_order_and_verifies(
    store_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path, keyguard_config(tmp_path, store=store_url))
    start = time.time() - 3600
    chains = await _write(config, start)
    export = tmp_path / "export.jsonl"
    done = await asyncio.to_thread(_invoke, "audit", "export", "-o", str(export), "-c", str(config))
    assert done.exit_code == 0, done.output
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    times = [line["created"] for line in lines]
    assert times == sorted(times)  # records, checkpoints and head sets together
    assert {line["type"] for line in lines} == {"record", "checkpoint", "heads"}
    records = [line for line in lines if line["type"] == "record"]
    assert {r["chain"] for r in records} == set(chains)
    assert len(records) == WRITERS * (RECORDS + 2)  # each with its open and close records
    requests = [(r["data"]["i"], r["data"]["writer"]) for r in records if r["kind"] == "request"]
    assert requests == [(i, w) for i in range(RECORDS) for w in range(WRITERS)]  # interleaved

    verified = await asyncio.to_thread(
        _invoke, "audit", "verify", "--file", str(export), "-c", str(config)
    )
    assert verified.exit_code == 0 and "ok:" in verified.output, verified.output

    since = iso_at(start + RECORDS / 2 * 0.01)  # each chain cut in its middle
    part = tmp_path / "part.jsonl"
    done = await asyncio.to_thread(
        _invoke, "audit", "export", "--since", since, "-o", str(part), "-c", str(config)
    )
    assert done.exit_code == 0, done.output
    cut = [json.loads(line) for line in part.read_text().splitlines()]
    assert cut and all(line["created"] >= since for line in cut)
    assert {line["chain"] for line in cut if line["type"] == "record"} == set(chains)
    verified = await asyncio.to_thread(
        _invoke, "audit", "verify", "--file", str(part), "-c", str(config)
    )
    assert verified.exit_code == 0, verified.output

    edited = export.read_text().replace(
        '"i":5,"status":200,"writer":1', '"i":5,"status":500,"writer":1'
    )
    assert edited != export.read_text()
    export.write_text(edited)
    verified = await asyncio.to_thread(
        _invoke, "audit", "verify", "--file", str(export), "-c", str(config)
    )
    assert verified.exit_code == 1 and "edited" in verified.output, verified.output
