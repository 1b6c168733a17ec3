"""A busy monitor never holds the audit back, catches up before it serves more, and a flood
that overfills it is counted and raised, never silent.

What a crash loses is bounded by the audit writer's flush interval only if every record reaches
the writer as its request is recorded: here, with the detectors behind by thousands of
requests, every record is already queued to the writer (and written by one flush)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.audit.settings import AuditSettings
from keyguard.audit.signing import Signer
from keyguard.audit.store import AuditStore
from keyguard.audit.writer import AuditWriter
from keyguard.core.observation import Observation
from keyguard.core.request import RequestContext
from keyguard.detect.detection import Detection
from keyguard.detect.engine import Detector
from keyguard.detect.settings import DetectSettings
from keyguard.events import SecurityEvent
from keyguard.monitor.backlog import CATCH_UP_S, CATCH_UP_STEP, STEP, Backlog
from keyguard.monitor.gate import AuditGate, AuditUnavailable
from keyguard.monitor.pipeline import Monitor

T0 = 1_800_000_000.0


@pytest.fixture
def engine(sqlite_engine: AsyncEngine) -> AsyncEngine:
    return sqlite_engine


def context(i: int) -> RequestContext:
    ctx = RequestContext(f"{i:016x}", time.perf_counter(), "POST", "10.0.0.1", "ua/1.0")
    ctx.status = 200
    return ctx


class Counting:
    """The real detector, counting the requests it judged."""

    def __init__(self) -> None:
        self.inner = Detector(DetectSettings())
        self.settings = self.inner.settings
        self.judged = 0

    def observe(self, obs: Observation) -> list[object]:
        self.judged += 1
        return list(self.inner.observe(obs))


async def test_records_reach_the_writer_before_the_detectors_see_them(
    engine: AsyncEngine,
) -> None:
    writer = AuditWriter(
        AuditStore(engine), AuditSettings(), signer=Signer(Ed25519PrivateKey.generate())
    )
    detector = Counting()
    monitor = Monitor(audit_settings=AuditSettings(), audit=writer, detector=detector)  # type: ignore[arg-type]
    contexts = [context(i) for i in range(2000)]
    for ctx in contexts:
        monitor.record(ctx)
    # the detectors have not run: every record is queued anyway, and one flush writes them
    assert detector.judged == 0 and monitor.pending == 2000
    assert writer.queued == 2000
    await writer.flush()
    written = [r.data async for r in AuditStore(engine).records_by_time() if r.kind == "request"]
    assert len(written) == 2000
    assert all(ctx.request_id in d for ctx, d in zip(contexts, written, strict=True))
    assert await monitor.process() == 2000 and detector.judged == 2000
    await writer.close()


def test_the_monitor_takes_more_of_the_loop_once_it_is_behind() -> None:
    backlog = Backlog(100)
    assert backlog.step(T0) == STEP and backlog.lag(T0) == 0.0
    backlog.put(Observation(at=T0))
    assert backlog.step(T0 + CATCH_UP_S / 2) == STEP
    assert backlog.step(T0 + CATCH_UP_S + 0.01) == CATCH_UP_STEP
    assert backlog.lag(T0 + 2.0) == 2.0


def test_once_behind_the_monitor_handles_at_least_what_arrived_since_its_last_yield() -> None:
    # a flood at high concurrency finishes more requests between two of the monitor's yields
    # than a fixed step: the step grows with them, so the backlog shrinks while behind instead
    # of growing to its cap (where the detectors stop seeing requests)
    backlog = Backlog(1_000_000)
    for _ in range(5000):
        backlog.put(Observation(at=T0))
    behind = T0 + CATCH_UP_S + 0.01
    assert backlog.step(behind) == CATCH_UP_STEP + 5000
    for _ in range(3):  # each pass: 1,000 requests finished while the monitor yielded
        for _ in range(1000):
            backlog.put(Observation(at=T0))
        waiting = len(backlog)
        for _ in range(min(backlog.step(behind), waiting)):
            backlog.items.popleft()
        assert len(backlog) == waiting - 1000 - CATCH_UP_STEP  # shrinks (a fixed step: grows)
    assert len(backlog) == 5000 - 3 * CATCH_UP_STEP
    assert backlog.step(T0) == STEP  # keeping up: a few at a time, whatever arrived


def test_a_full_backlog_counts_and_raises_what_the_detectors_miss() -> None:
    raised: list[SecurityEvent] = []
    backlog = Backlog(3, alert=raised.append)
    for i in range(3):
        assert backlog.put(Observation(at=T0 + i))
    assert not backlog.put(Observation(at=T0 + 3))  # full: dropped, raised at once
    assert backlog.dropped == 1 and len(raised) == 1
    assert raised[0].kind == "monitor_overloaded" and raised[0].severity == "high"
    assert raised[0].evidence["dropped"] == 1
    for i in range(4, 50):  # a flood goes on: counted, raised at most once a minute
        backlog.put(Observation(at=T0 + i / 100))
    assert backlog.dropped == 47 and len(raised) == 1
    backlog.report(T0 + 3 + 59)
    assert len(raised) == 1
    backlog.report(T0 + 3 + 61)  # a minute later: what was dropped since, in one event
    assert len(raised) == 2 and raised[1].evidence == {"dropped": 46, "total": 47, "cap": 3}
    backlog.report(T0 + 200)  # nothing new: nothing raised
    assert len(raised) == 2


async def test_an_overfilled_monitor_still_audits_every_request(engine: AsyncEngine) -> None:
    writer = AuditWriter(
        AuditStore(engine), AuditSettings(), signer=Signer(Ed25519PrivateKey.generate())
    )
    raised: list[SecurityEvent] = []
    monitor = Monitor(
        audit_settings=AuditSettings(),
        audit=writer,
        detector=Counting(),  # type: ignore[arg-type]
        max_pending=10,
        alert=raised.append,
    )
    for i in range(25):
        monitor.record(context(i))
    assert monitor.pending == 10 and monitor.dropped == 15
    assert writer.queued == 25 and writer.dropped == 0  # on record all the same
    assert [e.kind for e in raised] == ["monitor_overloaded"]
    await writer.close()


class _Finding:
    """A detector with a finding on every request (its own subject: nothing is folded)."""

    def __init__(self) -> None:
        self.settings = DetectSettings()

    def observe(self, obs: Observation) -> list[Detection]:
        return [Detection("velocity", "high", f"request:{obs.request_id}", "x", obs.at)]


class _FailingOnce:
    """A responder whose first response fails with an error it did not expect."""

    def __init__(self) -> None:
        self.handed: list[str] = []

    async def handle(self, finding: Detection) -> None:
        self.handed.append(finding.subject)
        if len(self.handed) == 1:
            raise RuntimeError("unexpected")


async def test_a_response_that_fails_unexpectedly_is_counted_and_the_pass_goes_on() -> None:
    responder = _FailingOnce()
    monitor = Monitor(
        audit_settings=AuditSettings(),
        detector=_Finding(),  # type: ignore[arg-type]
        responder=responder,  # type: ignore[arg-type]
    )
    for i in range(3):
        monitor.record(context(i))
    assert await monitor.process() == 3  # the two after it in the same pass
    assert len(responder.handed) == 3 and monitor.errors == 1
    assert monitor.pending == 0 and monitor.processed == 3


def test_a_full_backlog_closes_the_gate_by_default() -> None:
    """At the backlog's bound a request served would go unseen by the detectors: the audit gate
    refuses it (fail closed) unless the operator chose to serve."""
    monitor = Monitor(
        audit_settings=AuditSettings(),
        detector=Counting(),  # type: ignore[arg-type]
        max_pending=3,
    )
    refusing = AuditGate(_Allow(), monitor, refuse=True)
    serving = AuditGate(_Allow(), monitor, refuse=False)
    for i in range(2):
        monitor.record(context(i))
    refusing.authorize(context(99), datetime.now(UTC))  # below the bound: forwarded
    monitor.record(context(2))
    assert monitor.audit_full
    with pytest.raises(AuditUnavailable) as refused:
        refusing.authorize(context(100), datetime.now(UTC))
    assert refused.value.status == 503 and "detectors' backlog" in str(refused.value)
    serving.authorize(context(101), datetime.now(UTC))  # serve_unaudited: let through, counted
    assert monitor.audit_refused == 1 and monitor.served_while_full == 1


class _Allow:
    def authorize(self, ctx: object, now: datetime) -> None:
        return None
