"""The audit and monitor tables on every backend: concurrent writers each keep their own
chain, each batch sealed, tied together by head sets; the writer flushes and never blocks;
incidents, blocks and baselines round-trip."""

from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.audit.chain import canonical
from keyguard.audit.export import verify_store
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.sinks import StdoutSink, SyslogSink
from keyguard.audit.store import AuditStore
from keyguard.audit.verify import VerifyReport
from keyguard.audit.writer import AuditWriter
from keyguard.detect.detection import Detection
from keyguard.monitor.store import MonitorStore
from keyguard.respond.incidents import IncidentBook
from keyguard.store import open_store

NOW = 1_800_000_000.0


SIGNER = Signer(Ed25519PrivateKey.generate())


async def _verify(store: AuditStore, signer: Signer) -> VerifyReport:
    check = signature_checker(load_public_keys([signer.public_pem().encode()]))
    return await verify_store(store, check)


@pytest.mark.parametrize("direct", [False, True], ids=["engine", "direct"])
async def test_concurrent_writers_keep_their_own_chains(engine: AsyncEngine, direct: bool) -> None:
    writers = [  # with direct: one writer through the engine, two from the loop (SQLite)
        AuditWriter(
            AuditStore(engine, direct=direct and w > 0), AuditSettings(batch_size=7), signer=SIGNER
        )
        for w in range(3)
    ]
    for writer in writers:
        await writer.open()
    for w, writer in enumerate(writers):
        for i in range(40):
            writer.append("request", {"writer": w, "i": i}, at=NOW + i)
    await asyncio.gather(*(writer.flush() for writer in writers))
    for writer in writers:
        await writer.close()
    store = AuditStore(engine)
    report = await _verify(store, SIGNER)
    assert report.ok and report.records == 126 and report.chains == 3, report
    assert report.head_sets == 3  # one at each close, naming every chain that moved
    assert report.notes == []  # every segment closed
    chains = await store.chains()
    assert {chain: pos.seq for chain, pos in chains.items()} == {w.id: 42 for w in writers}
    assert sum(writer.findings for writer in writers) == 0
    heads = [h async for h in store.head_sets()]
    last = heads[-1]
    assert not isinstance(last, str) and {c for c, _, _ in last.heads} == {w.id for w in writers}


async def test_writer_loop_flushes_and_close_seals(engine: AsyncEngine) -> None:
    out = io.StringIO()
    sink = StdoutSink()
    writer = AuditWriter(AuditStore(engine), AuditSettings(), signer=SIGNER, sink=sink)
    import sys

    old, sys.stdout = sys.stdout, out
    try:
        for i in range(10):
            writer.append("admin", {"i": i})
        await writer.tick()
        writer.append("admin", {"i": 10})
        await writer.close()
    finally:
        sys.stdout = old
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    kinds = [line.get("kind") for line in lines if line["type"] == "record"]
    assert kinds == ["segment", *["admin"] * 11, "segment"]  # open, the records, close
    assert lines[-1]["type"] == "heads" and lines[-1]["heads"][writer.id][0] == 13
    assert lines[-2]["type"] == "checkpoint" and lines[-2]["seq"] == 13
    assert lines[-2]["chain"] == writer.id
    checkpoints = [line["seq"] for line in lines if line["type"] == "checkpoint"]
    assert checkpoints == [1, 11, 13]  # one per committed batch
    assert writer.written == 13 and writer.queued == 0
    assert not writer.append("admin", {"late": True}) and writer.dropped == 1
    assert (await _verify(AuditStore(engine), SIGNER)).ok


async def test_writer_keeps_records_when_the_store_fails(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'k.db'}")
    engine = store.engine  # type: ignore[attr-defined]
    writer = AuditWriter(AuditStore(engine), AuditSettings(max_queue=1000), signer=SIGNER)
    writer.append("admin", {"i": 1})
    await store.close()
    async with engine.begin() as conn:  # the table disappears under the writer
        await conn.exec_driver_sql("DROP TABLE audit_records")
    with pytest.raises(Exception):  # noqa: B017 - the store's error, whatever it is
        await writer.flush()
    assert writer.queued == 1  # kept for the next attempt
    for i in range(2000):
        writer.append("admin", {"i": i})
    assert writer.queued == 1000 and writer.dropped == 1001
    await engine.dispose()


def test_syslog_sink_sends_json_lines() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        sink = SyslogSink(f"127.0.0.1:{port}")
        try:
            sink.write(['{"type":"record","seq":1}'])
            message = server.recv(4096).decode()
        finally:
            sink.close()
    assert "keyguard-audit: " in message and '{"type":"record","seq":1}' in message


def test_syslog_rfc5424_carries_the_chain_fields_as_structured_data() -> None:
    created = "2026-12-03T08:00:00.000000Z"
    line = canonical({"type": "record", "chain": "ab12", "seq": 7, "hash": 'h"]\\x',
                      "created": created, "kind": "request", "data": {}})  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        sink = SyslogSink(f"127.0.0.1:{server.getsockname()[1]}", format="rfc5424")
        try:
            sink.write([line])
            message = server.recv(65_536).decode()
        finally:
            sink.close()
    head, _, rest = message.partition(" [keyguard@32473 ")
    assert head.startswith(f"<38>1 {created} ") and head.endswith(" audit")  # auth.info
    sd, _, msg = rest.partition("] ")
    assert 'chain="ab12" seq="7" hash="h\\"\\]\\\\x" kind="request"' in sd
    assert msg.rstrip("\x00") == line  # the line itself: the SIEM's copy verifies


async def test_monitor_store_round_trips(engine: AsyncEngine) -> None:
    store = MonitorStore(engine)
    book = IncidentBook(3600)
    finding = Detection("velocity", "high", "key:KEYAAAAAAAA1", "fast", NOW, "r1", "KEYAAAAAAAA1",
                      "billing", "10.0.0.0/24", {"tokens": 5})  # fmt: skip
    incident, _ = book.take(finding, NOW)
    await store.save_incident(incident)
    incident, _ = book.take(finding, NOW + 5)
    await store.save_incident(incident)
    [saved] = await store.incidents(status="open")
    assert saved.id == incident.id and saved.count == 2 and saved.evidence["latest"]["tokens"] == 5
    from datetime import UTC, datetime

    resolved = await store.set_status(incident.id, "resolved", datetime.now(UTC))
    assert resolved is not None and resolved.status == "resolved"
    assert await store.incidents(status="open") == []

    await store.add_block("key:KEYAAAAAAAA1", NOW + 900, "velocity", incident.id, NOW)
    await store.add_block("key:KEYAAAAAAAA1", NOW + 1800, "velocity", incident.id, NOW)
    assert await store.active_blocks(NOW) == {"key:KEYAAAAAAAA1": NOW + 1800}
    assert len(await store.remove_blocks(incident_id=incident.id)) == 1
    assert await store.active_blocks(NOW) == {}

    await store.save_profiles({"key:A": {"requests": 1}, "app:b": {"requests": 2}}, NOW)
    await store.save_profiles({"key:A": {"requests": 3}}, NOW)
    assert dict(await store.load_profiles()) == {"key:A": {"requests": 3}, "app:b": {"requests": 2}}


async def test_a_writer_closes_its_chain_by_time_and_goes_on_in_a_new_one(
    engine: AsyncEngine,
) -> None:
    clock = [NOW]
    settings = AuditSettings(chain_max_age_s=60)
    writer = AuditWriter(AuditStore(engine), settings, signer=SIGNER, clock=lambda: clock[0])
    writer.append("admin", {"i": 1})
    await writer.tick()
    first = writer.id
    clock[0] += 61
    await writer.tick()  # closes the chain (sealed, named in a head set)
    writer.append("admin", {"i": 2})
    await writer.tick()  # the next record opens a new chain
    assert writer.id != first and writer.chains == 2
    await writer.close()
    store = AuditStore(engine)
    report = await _verify(store, SIGNER)
    assert report.ok and report.chains == 2 and report.notes == [], report
    closing = [r async for r in store.records(chain=first)][-1]
    assert orjson.loads(closing.data) == {"event": "close", "writer": first, "records": 2}


async def test_head_sets_stay_few_and_a_forged_one_does_not_silence_a_writer(
    engine: AsyncEngine,
) -> None:
    from datetime import UTC, datetime

    from keyguard.audit.chain import Position
    from keyguard.audit.heads import sign_heads
    from keyguard.audit.rows import iso

    clock = [NOW]
    settings = AuditSettings(checkpoint_interval_s=10)
    store = AuditStore(engine)
    one = AuditWriter(store, settings, signer=SIGNER, clock=lambda: clock[0])
    two = AuditWriter(store, settings, signer=SIGNER, clock=lambda: clock[0] + 1)
    for writer in (one, two):
        writer.append("admin", {"i": 1})
        await writer.tick()
    clock[0] += 10
    await one.tick()  # signs a head set naming both chains
    await two.tick()  # one signed 1 s ago stands for it
    assert (one.head_sets, two.head_sets) == (1, 0)
    # someone without the key adds a head set dated an hour ahead
    attacker = Signer(Ed25519PrivateKey.generate())
    ahead = iso(datetime.fromtimestamp(clock[0] + 3600, UTC))
    await store.add_heads(sign_heads(attacker, ahead, "evil", [(one.id, Position(1, "f" * 64))]))
    clock[0] += 10
    await two.tick()
    assert two.head_sets == 1  # not silenced
    await one.close()
    await two.close()
    report = await _verify(store, SIGNER)
    assert (
        not report.ok
        and "head set of" in report.problems[0]
        and "not valid" in (report.problems[0])
    )
