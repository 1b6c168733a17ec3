"""Replay recorded traffic through the detectors, with the recorded clock, and score it.

Input is JSON lines: an audit export (``keyguard audit export``; its ``request`` records are
observations) or bare observation records (``{"at": ..., "key_id": ..., ...}``), optionally
labelled for evaluation (``"label": "benign"`` or ``"label": "attack:<scenario>:<rule>"``).
:func:`replay` runs a fresh :class:`~keyguard.detect.engine.Detector` and the incident book over
them, in order, at the recorded times: weeks of traffic take seconds. :func:`score` scores a
labelled replay per rule: detection rate, time to detect (requests and seconds after the
scenario's first malicious request) and false alerts per 10,000 benign requests.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..core.observation import Observation
from ..detect.declared import Declarations
from ..detect.engine import Detector
from ..detect.settings import RULES, DetectSettings
from ..errors import ConfigurationError
from ..respond.incidents import Incident, IncidentBook

__all__ = [
    "read_observations",
    "replay",
    "ReplayResult",
    "Alert",
    "score",
    "Evaluation",
    "format_report",
]


def read_observations(lines: Iterable[str | bytes]) -> Iterator[tuple[Observation, str | None]]:
    """``(observation, label)`` for every request in an export or an observation file."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
            if obj.get("type") == "checkpoint":
                continue
            if obj.get("type") == "record":
                if obj.get("kind") != "request":
                    continue
                obj = obj["data"]
            yield Observation.from_record(obj), obj.get("label")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise ConfigurationError(f"line {number}: not a request record") from None


@dataclass(frozen=True, slots=True)
class Alert:
    """A new incident, and the request that opened it."""

    incident: Incident
    index: int  # position of the request in the replay
    label: str | None


@dataclass
class ReplayResult:
    requests: int = 0
    findings: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    alerts: list[Alert] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


def replay(
    items: Iterable[tuple[Observation, str | None]],
    settings: DetectSettings,
    *,
    keep_labels: bool = False,
    teams: Mapping[str, str] | None = None,
    declarations: Declarations | None = None,
) -> ReplayResult:
    """``teams`` (app -> team) and ``declarations`` (keys' limit rules) as the gateway has
    them from ``limits:``."""
    detector = Detector(settings, teams, declarations)
    book = IncidentBook(settings.cooldown_s)
    result = ReplayResult()
    for index, (obs, label) in enumerate(items):
        result.requests += 1
        if keep_labels:
            result.labels.append(label)
            result.times.append(obs.at)
        for finding in detector.observe(obs):
            result.findings[finding.rule] += 1
            incident, change = book.take(finding, obs.at)
            if change == "new":
                result.alerts.append(Alert(incident, index, label))
    return result


@dataclass
class RuleScore:
    scenarios: int = 0
    detected: int = 0
    requests_to_detect: list[int] = field(default_factory=list)
    seconds_to_detect: list[float] = field(default_factory=list)
    false_alerts: int = 0
    missed: list[str] = field(default_factory=list)


@dataclass
class Evaluation:
    benign: int = 0
    malicious: int = 0
    false_alerts: int = 0
    rules: dict[str, RuleScore] = field(default_factory=dict)
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def false_per_10k(self) -> float:
        return 10_000 * self.false_alerts / self.benign if self.benign else 0.0


def score(result: ReplayResult) -> Evaluation:
    """Score a replay made with ``keep_labels=True``."""
    ev = Evaluation(rules={rule: RuleScore() for rule in RULES})
    first: dict[str, tuple[int, float]] = {}
    positions: dict[str, list[int]] = defaultdict(list)
    expected: dict[str, str] = {}
    for index, label in enumerate(result.labels):
        if label is None or label == "benign":
            ev.benign += 1
            continue
        ev.malicious += 1
        _, scenario, rule = (label.split(":", 2) + ["", ""])[:3]
        expected[scenario] = rule
        positions[scenario].append(index)
        first.setdefault(scenario, (index, result.times[index]))
    detections: dict[str, dict[str, int]] = defaultdict(dict)  # scenario -> rule -> index
    for alert in result.alerts:
        label = alert.label
        if label is None or label == "benign":
            ev.false_alerts += 1
            ev.rules[alert.incident.rule].false_alerts += 1
            continue
        scenario = label.split(":", 2)[1]
        detections[scenario].setdefault(alert.incident.rule, alert.index)
    for scenario, rule in expected.items():
        score = ev.rules.setdefault(rule, RuleScore())
        score.scenarios += 1
        start_index, start_time = first[scenario]
        found = detections.get(scenario, {})
        entry: dict[str, Any] = {"rule": rule, "fired": sorted(found), "requests": 0}
        if rule in found:
            at = found[rule]
            n = sum(1 for i in positions[scenario] if i <= at)
            score.detected += 1
            score.requests_to_detect.append(n)
            score.seconds_to_detect.append(result.times[at] - start_time)
            entry.update(requests=n, seconds=round(result.times[at] - start_time, 1))
        else:
            score.missed.append(scenario)
        entry["malicious_requests"] = len(positions[scenario])
        ev.scenarios[scenario] = entry
    return ev


def _stat(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    return f"{fmt.format(statistics.median(values))} / {fmt.format(max(values))}"


def format_report(ev: Evaluation) -> str:
    """The per-rule table (markdown) and the totals."""
    lines = [
        "| rule | scenarios | detected | detection rate | requests to detect (median / max) "
        "| seconds to detect (median / max) | false alerts | false alerts per 10k benign |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rule, s in ev.rules.items():
        if not s.scenarios and not s.false_alerts:
            continue
        rate = f"{100 * s.detected / s.scenarios:.0f}%" if s.scenarios else "-"
        per10k = 10_000 * s.false_alerts / ev.benign if ev.benign else 0.0
        lines.append(
            f"| {rule} | {s.scenarios} | {s.detected} | {rate} | "
            f"{_stat([float(x) for x in s.requests_to_detect], '{:.0f}')} | "
            f"{_stat(s.seconds_to_detect, '{:.1f}')} | {s.false_alerts} | {per10k:.2f} |"
        )
    total = sum(s.scenarios for s in ev.rules.values())
    detected = sum(s.detected for s in ev.rules.values())
    lines.append("")
    lines.append(
        f"benign requests: {ev.benign}; malicious requests: {ev.malicious}; "
        f"scenarios detected by their rule: {detected}/{total}; "
        f"false alerts: {ev.false_alerts} ({ev.false_per_10k:.2f} per 10,000 benign requests)"
    )
    missed = [m for s in ev.rules.values() for m in s.missed]
    if missed:
        lines.append("missed: " + ", ".join(missed))
    return "\n".join(lines)
