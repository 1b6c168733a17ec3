"""Observations and detectors for the rules' tests: a request as the monitor records it, a
detector that has learnt three weeks of one key's business-hours traffic, a refused credential,
keys that have matured."""

from __future__ import annotations

import copy
from typing import Any

from keyguard.core.observation import Observation
from keyguard.detect.detection import Detection
from keyguard.detect.engine import Detector
from keyguard.detect.settings import DetectSettings

DAY = 86400.0
T0 = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
UA = "AsyncAzureOpenAI/Python 1.99.0"
CLIENT = "python/1.99.0/Linux/x86_64/CPython/3.11.9"


def obs(at: float, **kw: Any) -> Observation:
    base: dict[str, Any] = {
        "at": at,
        "request_id": f"r{int(at * 1000)}",
        "key_id": "KEYAAAAAAAA1",
        "presented_key_id": "KEYAAAAAAAA1",
        "app": "billing",
        "source": "10.1.2.3",
        "network": "10.1.2.0/24",
        "user_agent": UA,
        "client": CLIENT,
        "operation": "chat",
        "deployment": "gpt-4o",
        "api_version": "2024-10-21",
        "status": 200,
        "upstream_status": 200,
        "prompt_tokens": 300,
        "completion_tokens": 100,
        "latency_ms": 800.0,
        "max_tokens": 400,
    }
    base.update(kw)
    return Observation(**base)


_LEARNT: dict[str, Detector] = {}


def learnt(**kw: Any) -> Detector:
    """A detector that has seen three weeks of business-hours traffic for the default key
    (built once per variant, then copied)."""
    name = repr(sorted(kw.items()))
    if name not in _LEARNT:
        _LEARNT[name] = _learn(**kw)
    return copy.deepcopy(_LEARNT[name])


def _learn(settings: DetectSettings | None = None, days: int = 21, **kw: Any) -> Detector:
    d = Detector(settings or DetectSettings())
    for day in range(days):
        if day % 7 >= 5:
            continue  # weekdays only
        for minute in range(9 * 60, 17 * 60, 6):  # 80 requests a day, 09:00-17:00
            assert d.observe(obs(T0 + day * DAY + minute * 60, **kw)) == []
    return d


def fire(d: Detector, o: Observation) -> list[Detection]:
    return d.observe(o)


def rules(findings: list[Detection]) -> list[str]:
    return [f.rule for f in findings]


NOW = T0 + 22 * DAY + 10 * 3600  # a Tuesday, 10:00 UTC, after the baseline


def failed(
    at: float, key: str | None, network: str = "203.0.113.0/24", refused: str | None = None
) -> Observation:
    """A refused credential: by default the key ``key`` (the same digest each time)."""
    return obs(
        at,
        key_id=None,
        app=None,
        presented_key_id=key,
        refused=refused or f"digest-of-{key}",
        network=network,
        status=401,
        upstream_status=0,
        reason="unknown_key",
        deployment=None,
    )


QUICK = DetectSettings(learning_days=1)  # keys mature after a day of use


def mature(d: Detector, keys: dict[str, tuple[str, int]]) -> None:
    """The last 26 hours of steady use by each key (its app, its tokens a request every 30 s,
    its peaks fresh): mature keys."""
    start = NOW - 26 * 3600
    for step in range(0, 26 * 120 - 20):
        for k, (key_id, (app, tokens)) in enumerate(keys.items()):
            d.observe(obs(start + step * 30 + k, key_id=key_id, app=app, prompt_tokens=tokens))
