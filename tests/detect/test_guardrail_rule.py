"""The ``guardrail_repeat`` rule: a key that keeps sending secrets is an incident."""

from __future__ import annotations

from typing import Any

from keyguard.core.observation import Observation
from keyguard.detect.engine import Detector
from keyguard.detect.settings import DetectSettings

T0 = 1_767_571_200.0


def hit(family: str = "secret", where: str = "request", action: str = "block") -> dict[str, str]:
    return {
        "family": family, "category": "azure_openai_key", "detector": "azure_openai_key",
        "action": action, "where": where, "role": "user", "fingerprint": "ab" * 32,
    }  # fmt: skip


def obs(at: float, *hits: dict[str, str], **kw: Any) -> Observation:
    base: dict[str, Any] = {
        "at": at, "request_id": f"r{at}", "key_id": "KEYAAAAAAAA1", "app": "billing",
        "source": "10.1.2.3", "network": "10.1.2.0/24", "operation": "chat",
        "deployment": "gpt-4o", "status": 400, "guardrails": tuple(hits),
    }  # fmt: skip
    base.update(kw)
    return Observation(**base)


def findings(detector: Detector, observations: list[Observation]) -> list[Any]:
    out = []
    for o in observations:
        out += [f for f in detector.observe(o) if f.rule == "guardrail_repeat"]
    return out


def test_five_requests_with_secrets_in_ten_minutes_are_an_incident_twenty_critical() -> None:
    d = Detector(DetectSettings())
    found = findings(d, [obs(T0 + i * 60, hit()) for i in range(5)])
    assert len(found) == 1 and found[0].severity == "high"
    assert found[0].subject == "key:KEYAAAAAAAA1"
    assert found[0].evidence["categories"] == ["azure_openai_key"]
    assert "ab" * 32 in found[0].evidence["fingerprints"]
    more = findings(d, [obs(T0 + 300 + i, hit(action="redact")) for i in range(15)])
    assert more[-1].severity == "critical"


def test_quiet_on_a_single_mistake_personal_data_answers_and_slow_repeats() -> None:
    d = Detector(DetectSettings())
    assert findings(d, [obs(T0, hit())]) == []
    assert findings(d, [obs(T0 + i, hit("personal")) for i in range(1, 30)]) == []
    assert findings(d, [obs(T0 + 40 + i, hit(where="answer")) for i in range(30)]) == []
    slow = Detector(DetectSettings())
    assert findings(slow, [obs(T0 + i * 200, hit()) for i in range(20)]) == []


def test_an_entra_app_counts_by_app_and_the_rule_can_be_switched_off() -> None:
    d = Detector(DetectSettings())
    found = findings(d, [obs(T0 + i, hit(), key_id=None, app="agents") for i in range(5)])
    assert found and found[0].subject == "app:agents"
    off = Detector(DetectSettings(guardrail_repeat={"enabled": False}))
    assert findings(off, [obs(T0 + i, hit()) for i in range(10)]) == []


def test_the_decisions_survive_an_audit_record_round_trip() -> None:
    o = obs(T0, hit())
    again = Observation.from_record(o.to_record())
    assert again.guardrails == o.guardrails
    assert Observation.from_record({**o.to_record(), "guardrails": "junk"}).guardrails == ()
