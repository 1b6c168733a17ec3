"""The monitor's repeat gate: a flood of identical findings reaches the responder about once a
second per incident, new subjects and higher severities at once, and no finding goes uncounted
(incident counts and the detections metric end exact)."""

from __future__ import annotations

from keyguard.audit.settings import AuditSettings
from keyguard.core.observation import Observation
from keyguard.detect.detection import Detection
from keyguard.detect.settings import DetectSettings
from keyguard.metrics.registry import GatewayMetrics
from keyguard.monitor.pipeline import FOLD_S, Monitor
from keyguard.respond.incidents import IncidentBook

T0 = 1_800_000_000.0


class _Flood:
    """A detector that finds something on every request: velocity, ``high`` unless the
    request's key says otherwise (``key_id`` "crit:*" is critical)."""

    def __init__(self) -> None:
        self.settings = DetectSettings()
        self.found = 0

    def observe(self, obs: Observation) -> list[Detection]:
        self.found += 1
        severity = "critical" if (obs.key_id or "").startswith("crit") else "high"
        return [
            Detection(rule="velocity", severity=severity, subject=f"key:{obs.key_id}",  # type: ignore[arg-type]
                    summary="flood", at=obs.at, request_id=obs.request_id, key_id=obs.key_id)
        ]  # fmt: skip


class _Book:
    """The responder's incident book, and every finding it was handed."""

    def __init__(self) -> None:
        self.book = IncidentBook(cooldown_s=600)
        self.handed: list[Detection] = []

    async def handle(self, finding: Detection) -> None:
        self.handed.append(finding)
        self.book.take(finding, finding.at)


def _monitor() -> tuple[Monitor, _Flood, _Book, GatewayMetrics]:
    detector, responder, metrics = _Flood(), _Book(), GatewayMetrics(["gpt-4o"])
    monitor = Monitor(
        audit_settings=AuditSettings(),
        metrics=metrics,
        detector=detector,  # type: ignore[arg-type]
        responder=responder,  # type: ignore[arg-type]
    )
    return monitor, detector, responder, metrics


async def _feed(monitor: Monitor, key: str, times: list[float]) -> None:
    for i, at in enumerate(times):
        await monitor._one(Observation(at=at, request_id=f"{key}-{i}", key_id=key))


def _detections(metrics: GatewayMetrics, severity: str) -> float:
    metrics.commit()
    value = metrics.registry.get_sample_value(
        "keyguard_detections_total", {"rule": "velocity", "severity": severity}
    )
    return value or 0.0


async def test_a_flood_reaches_the_responder_once_a_second() -> None:
    monitor, detector, responder, metrics = _monitor()
    times = [T0 + i * 0.001 for i in range(3000)]  # 3 s of a 1,000 req/s flood
    await _feed(monitor, "k1", times)
    assert detector.found == 3000
    assert 3 <= len(responder.handed) <= 4
    gaps = [b.at - a.at for a, b in zip(responder.handed, responder.handed[1:], strict=False)]
    assert all(gap >= FOLD_S for gap in gaps)
    await monitor.drain()  # what the gate held is passed on
    (incident,) = responder.book._open.values()
    assert incident.count == 3000
    assert sum(1 + f.repeats for f in responder.handed) == 3000
    assert _detections(metrics, "high") == 3000
    assert incident.evidence["latest"]["request_id"] == "k1-2999"


async def test_new_subjects_and_higher_severities_pass_at_once() -> None:
    monitor, _, responder, _ = _monitor()
    await _feed(monitor, "k1", [T0, T0 + 0.1])
    await _feed(monitor, "k2", [T0 + 0.2])
    await _feed(monitor, "crit-k1", [T0 + 0.3])
    assert [f.subject for f in responder.handed] == ["key:k1", "key:k2", "key:crit-k1"]
    assert [f.repeats for f in responder.handed] == [0, 0, 0]


async def test_a_clock_going_back_is_not_folded() -> None:
    monitor, _, responder, _ = _monitor()
    await _feed(monitor, "k1", [T0 + 10, T0 + 5])  # a replay out of order
    assert len(responder.handed) == 2


async def test_close_passes_on_what_the_gate_holds() -> None:
    monitor, _, responder, metrics = _monitor()
    await _feed(monitor, "k1", [T0 + i * 0.01 for i in range(10)])
    assert len(responder.handed) == 1
    await monitor.close()
    assert [f.repeats for f in responder.handed] == [0, 8]  # the latest, carrying 8 more
    (incident,) = responder.book._open.values()
    assert incident.count == 10 and _detections(metrics, "high") == 10
