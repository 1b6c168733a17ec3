"""The audit queue against hostile values: a record that cannot be written is refused alone
(replaced by one saying so, counted, reported), the rest are written; the queue is bounded and
says when it is full; nothing is lost without being counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keyguard.audit.export import verify_store
from keyguard.audit.queue import RecordQueue
from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer, load_public_keys, signature_checker
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.events import Event, SecurityEvent
from keyguard.store import open_store

NOW = 1_800_000_000.0
SIGNER = Signer(Ed25519PrivateKey.generate())
UNWRITABLE = [
    {"seed": 10**20},  # an integer beyond 64 bits
    {"seed": -(10**19)},
    {"text": "\ud800"},  # a lone surrogate
    {"nested": [{"deep": {(1, 2): "a key JSON cannot have"}}]},
    {"big": "x" * 5000},  # over max_record_bytes below
    {"value": object()},
]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def queue(**settings: object) -> tuple[RecordQueue, list[Event], Clock]:
    events: list[Event] = []
    clock = Clock()
    limits = AuditSettings.model_validate({"max_record_bytes": 4096, **settings})
    return RecordQueue(limits, clock=clock, alert=events.append), events, clock


@pytest.mark.parametrize("bad", UNWRITABLE, ids=range(len(UNWRITABLE)))
def test_a_record_that_cannot_be_written_is_replaced_alone(bad: dict[str, object]) -> None:
    q, events, _ = queue()
    assert q.put("request", {"request_id": "aa01", "ok": 1})
    assert q.put("request", {"request_id": "bb02", **bad})
    assert q.put("request", {"request_id": "cc03", "ok": 3})
    written = [orjson.loads(data) for _, _, data in q.take(10)]
    assert written[0] == {"request_id": "aa01", "ok": 1}
    assert written[2] == {"request_id": "cc03", "ok": 3}
    assert written[1]["request_id"] == "bb02" and written[1]["unrecordable"]
    assert set(written[1]) == {"request_id", "unrecordable"}  # nothing of the bad value
    assert q.rejected == 1 and q.dropped == 0
    [event] = events
    assert isinstance(event, SecurityEvent) and event.kind == "audit_record_refused"


def test_refusals_are_reported_once_a_minute_with_their_count() -> None:
    q, events, clock = queue()
    for _ in range(100):
        q.put("request", {"seed": 10**20})
    clock.now += 61
    q.put("request", {"seed": 10**20})
    assert q.rejected == 101 and len(q) == 101
    assert [e.evidence["count"] for e in events if isinstance(e, SecurityEvent)] == [1, 100]


def test_an_unknown_kind_is_refused_too() -> None:
    q, _, _ = queue()
    q.put("x" * 40, {"a": 1})
    [(_, kind, data)] = q.take(1)
    assert kind == "security" and "not a record kind" in orjson.loads(data)["unrecordable"]


def test_the_queue_is_bounded_and_says_when_it_is_full() -> None:
    q, events, _ = queue(max_queue=1000)
    for i in range(899):
        assert q.put("admin", {"i": i})
    assert not q.full
    q.put("admin", {"i": 899})
    assert q.full  # 90%: the gateway stops taking requests it could not record
    [event] = [e for e in events if isinstance(e, SecurityEvent)]
    assert event.kind == "audit_queue_full" and event.severity == "high"
    for i in range(200):
        q.put("admin", {"i": 900 + i})
    assert len(q) == 1000 and q.dropped == 100  # counted, never silent
    q.written(len(q.take(500)))
    q.settle()
    assert q.full  # still over half the mark
    q.written(len(q.take(100)))
    q.settle()
    assert not q.full


def test_serving_unaudited_is_a_critical_event() -> None:
    q, events, _ = queue(max_queue=1000, on_full="serve_unaudited")
    for i in range(900):
        q.put("admin", {"i": i})
    [event] = events
    assert isinstance(event, SecurityEvent) and event.severity == "critical"
    assert "serve_unaudited" in event.summary


async def test_a_flood_of_bad_records_leaves_the_others_written(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'k.db'}")
    events: list[Event] = []
    try:
        engine = store.engine  # type: ignore[attr-defined]
        writer = AuditWriter(
            AuditStore(engine),
            AuditSettings(batch_size=50, max_record_bytes=4096),
            signer=SIGNER,
            emit=events.append,
        )
        for i in range(300):
            bad: dict[str, Any] = UNWRITABLE[i % len(UNWRITABLE)] if i % 3 else {}  # type: ignore[assignment]
            writer.append("request", {"request_id": f"r{i:04d}", "n": i, **bad}, at=NOW + i)
        assert await writer.flush() == 300
        await writer.close()
        check = signature_checker(load_public_keys([SIGNER.public_pem().encode()]))
        report = await verify_store(AuditStore(engine), check)
        assert report.ok and report.records == 302  # with the segment's open and close
        records = [r async for r in AuditStore(engine).records_by_time() if r.kind == "request"]
        data = [orjson.loads(r.data) for r in records]
        assert [d["request_id"] for d in data] == [f"r{i:04d}" for i in range(300)]
        assert [d.get("n") for d in data if "unrecordable" not in d] == list(range(0, 300, 3))
        assert writer.rejected == 200
    finally:
        await store.close()


def test_records_being_written_still_count() -> None:
    q, _, _ = queue(max_queue=1000)
    for i in range(900):
        q.put("admin", {"i": i})
    batch = q.take(2000)  # a write under way to a store that does not answer
    assert len(batch) == 900 and len(q) == 900 and q.full and not q.waiting()
    q.give_back(batch)  # it failed: they wait again, in order
    assert [orjson.loads(d)["i"] for _, _, d in q.take(3)] == [0, 1, 2]
