"""Incidents: findings grouped per rule and subject, so one abuse is one alert, not thousands.

:meth:`IncidentBook.take` is a pure decision over the book and a finding, with ``now`` passed
in: a finding opens a new incident, unless the same rule already has an incident on the same
subject updated within ``cooldown_s``; then it joins that incident (``repeat``), raising its
severity when it is worse (``escalated``). Evidence keeps the first finding's details and the
latest ones, so it stays small.

An incident's status is ``open``, ``acknowledged`` (an operator took it on: who and when are
kept) or ``resolved``. An acknowledged incident stays acknowledged while repeats join it (its
count and last-seen time grow); a finding of a resolved incident opens a new one. The status an
operator sets lives in the store, which is the authority: :meth:`IncidentBook.set_status` brings
this process's book in line with it.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..core.observation import network_of
from ..detect.detection import Detection
from ..events import SecurityEvent, Severity
from .settings import SEVERITIES

__all__ = [
    "Incident",
    "IncidentBook",
    "Change",
    "detection_from_event",
    "NOT_INCIDENTS",
    "STATUSES",
]

#: security events that are not incidents of their own: the responder's requests to rotate
NOT_INCIDENTS = frozenset({"rotate_upstream_requested"})
#: events that report what a detection rule also finds: they join its incident
_RULE_OF_EVENT = {"raw_azure_key_presented": "raw_azure_key"}

Change = Literal["new", "escalated", "repeat"]
#: an incident's statuses, in the order an operator moves it along
STATUSES = ("open", "acknowledged", "resolved")


@dataclass(slots=True)  # not frozen: cheaper to build, one per repeated finding
class Incident:
    id: str
    rule: str
    severity: Severity
    subject: str
    summary: str
    created_at: float
    updated_at: float
    key_id: str | None = None
    app: str | None = None
    source: str | None = None
    count: int = 1
    status: str = "open"  # one of STATUSES
    evidence: dict[str, Any] = field(default_factory=dict)
    actions: tuple[str, ...] = ()
    acknowledged_by: str | None = None  # the admin actor who acknowledged it
    acknowledged_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "severity": self.severity,
            "subject": self.subject,
            "summary": self.summary,
            "status": self.status,
            "key_id": self.key_id,
            "app": self.app,
            "source": self.source,
            "count": self.count,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "evidence": self.evidence,
            "actions": list(self.actions),
            "acknowledged_by": self.acknowledged_by,
            "acknowledged_at": self.acknowledged_at,
        }


def detection_from_event(event: SecurityEvent, *, v4: int = 24, v6: int = 48) -> Detection | None:
    """A security event raised outside the detectors (a raw Azure key presented, a leak the
    scanner found, a budget's soft threshold, an expiring key, audit tampering, ...) as a
    finding, so every incident is in one list; ``None`` for an event that is already an
    incident's (the responder's own) or is not one."""
    if event.kind in NOT_INCIDENTS or "incident" in event.evidence:
        return None
    rule = _RULE_OF_EVENT.get(event.kind, event.kind)
    if event.key_id:
        subject = f"key:{event.key_id}"
    elif rule == "raw_azure_key":  # as the rule names it, so both join one incident
        subject = f"source:{network_of(event.source, v4, v6) or event.source}"
    elif event.upstream:
        subject = f"upstream:{event.upstream}"
    elif event.app:
        subject = f"app:{event.app}"
    elif event.source:
        subject = f"source:{network_of(event.source, v4, v6) or event.source}"
    else:
        subject = f"gateway:{event.kind}"
    evidence = {k: v for k, v in event.evidence.items() if isinstance(k, str)}
    if event.upstream:
        evidence["upstream"] = event.upstream
    return Detection(
        rule=rule,
        severity=event.severity,
        subject=subject,
        summary=event.summary,
        at=event.created.timestamp(),
        key_id=event.key_id,
        app=event.app,
        source=event.source,
        evidence=evidence,
    )


def _named(evidence: dict[str, Any], detail: Mapping[str, Any]) -> dict[str, Any]:
    """The incident's evidence, naming the upstream once any finding of it did (the
    detector's finding of a raw key and the event naming its upstream join one incident, in
    either order)."""
    if "upstream" in detail:
        evidence["upstream"] = detail["upstream"]
    return evidence


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity)


class IncidentBook:
    """The incidents still within their cooldown, by (rule, subject); bounded."""

    def __init__(self, cooldown_s: float, cap: int = 10_000) -> None:
        self._open: OrderedDict[tuple[str, str], Incident] = OrderedDict()
        self._cooldown = cooldown_s
        self._cap = cap

    def take(self, finding: Detection, now: float) -> tuple[Incident, Change]:
        key = (finding.rule, finding.subject)
        current = self._open.get(key)
        detail = {"at": finding.at, "request_id": finding.request_id, **finding.evidence}
        if (
            current is None
            or current.status == "resolved"
            or now - current.updated_at > self._cooldown
        ):
            incident = Incident(
                id=secrets.token_hex(8),
                rule=finding.rule,
                severity=finding.severity,
                subject=finding.subject,
                summary=finding.summary,
                created_at=now,
                updated_at=now,
                key_id=finding.key_id,
                app=finding.app,
                source=finding.source,
                count=1 + finding.repeats,
                evidence=_named({"first": detail, "latest": detail}, detail),
            )
            change: Change = "new"
        else:
            worse = _rank(finding.severity) > _rank(current.severity)
            incident = Incident(  # not dataclasses.replace: this runs for every repeat
                id=current.id,
                rule=current.rule,
                severity=finding.severity if worse else current.severity,
                subject=current.subject,
                summary=finding.summary if worse else current.summary,
                created_at=current.created_at,
                updated_at=now,
                key_id=current.key_id,
                app=current.app,
                source=current.source,
                count=current.count + 1 + finding.repeats,
                status=current.status,
                evidence=_named({**current.evidence, "latest": detail}, detail),
                actions=current.actions,
                acknowledged_by=current.acknowledged_by,
                acknowledged_at=current.acknowledged_at,
            )
            change = "escalated" if worse else "repeat"
        self._open[key] = incident
        self._open.move_to_end(key)
        if len(self._open) > self._cap:
            self._open.popitem(last=False)
        return incident, change

    def note_actions(self, incident: Incident, actions: list[str]) -> Incident:
        updated = replace(incident, actions=tuple(dict.fromkeys((*incident.actions, *actions))))
        self._open[(incident.rule, incident.subject)] = updated
        return updated

    def set_status(
        self,
        incident_id: str,
        status: str,
        by: str | None = None,
        at: float | None = None,
    ) -> Incident | None:
        """Take the status the store holds (an operator's, on any replica); the incident as
        the book now has it, or ``None`` when the book does not hold it."""
        for key, incident in self._open.items():
            if incident.id == incident_id:
                updated = replace(incident, status=status, acknowledged_by=by, acknowledged_at=at)
                self._open[key] = updated
                return updated
        return None
