"""One request's values never keep the others out of the audit: the monitor records every
request it is handed, each part (metrics, audit, detection) on its own."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.core.observation import Observation
from keyguard.core.request import RequestContext
from keyguard.detect.engine import Detector
from keyguard.detect.settings import DetectSettings
from keyguard.monitor.pipeline import Monitor


@pytest.fixture
def engine(sqlite_engine: AsyncEngine) -> AsyncEngine:
    return sqlite_engine


def context(i: int, payload: dict[str, Any] | None = None) -> RequestContext:
    ctx = RequestContext(f"{i:016x}", time.perf_counter(), "POST", "10.0.0.1", "ua/1.0")
    ctx.payload = payload
    ctx.status = 200
    return ctx


class FailsOn:
    """A detector that fails on one request (a bug in a rule, say)."""

    def __init__(self, inner: Detector, request_id: str) -> None:
        self.inner, self.request_id = inner, request_id
        self.settings = inner.settings

    def observe(self, obs: Observation) -> list[Any]:
        if obs.request_id == self.request_id:
            raise RuntimeError("a rule failed")
        return self.inner.observe(obs)


async def test_every_request_is_recorded_whatever_it_holds(engine: AsyncEngine) -> None:
    signer = Signer(Ed25519PrivateKey.generate())
    writer = AuditWriter(AuditStore(engine), AuditSettings(), signer=signer)
    detector = FailsOn(Detector(DetectSettings()), f"{5:016x}")
    monitor = Monitor(audit_settings=AuditSettings(), audit=writer, detector=detector)  # type: ignore[arg-type]
    hostile: list[dict[str, Any] | None] = [
        {"seed": float("inf")},  # not an integer at all: clamped at the boundary, flagged
        {"seed": 1e20},  # beyond 64 bits: clamped, flagged
        {"max_tokens": -(10**30)},
        {"seed": 7},
    ]
    contexts = [context(i, hostile[i % len(hostile)]) for i in range(40)]
    for ctx in contexts:
        monitor.record(ctx)
    assert await monitor.process() == 40
    await writer.close()
    records = [
        orjson.loads(r.data)
        async for r in AuditStore(engine).records_by_time()
        if r.kind == "request"
    ]
    assert [r["request_id"] for r in records] == [ctx.request_id for ctx in contexts]
    assert monitor.errors == 1  # the planted detector failure, and nothing else
    assert sum(r.get("out_of_range") is True for r in records) == 30  # kept, and flagged
    assert writer.rejected == 0
