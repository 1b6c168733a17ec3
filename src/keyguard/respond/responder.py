"""Carry out the responses a finding calls for: record, alert, throttle, suspend, rotate.

:meth:`Responder.handle` turns a finding into an incident (:class:`.incidents.IncidentBook`),
and on a new or escalated incident runs the policy's actions for its rule and severity. While an
incident stays open, later findings renew an expired throttle. Every incident is a
:class:`~keyguard.events.SecurityEvent` on the event bus (so it is in the audit log) and a row in
the incidents table; automatic suspensions are :class:`~keyguard.events.AdminAction`\\ s by
``system:monitor``. A failing action is logged and counted, never raised: detection goes on.

An operator's status wins over this process's book. Saving an incident answers with the status
the store holds: an acknowledged incident stays acknowledged (repeats are still counted on it,
and its throttles renewed), and a repeat of a resolved one opens a new incident, with the
policy's actions taken again. :meth:`Responder.status_changed` (called where the operator acted,
and on the other replicas through the bus) makes the next repeat's save immediate instead of
waiting out the save interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from ..detect.detection import Detection
from ..errors import GatewayError
from ..events import AdminAction, EventBus, SecurityEvent
from ..keys.service import KeyService
from ..metrics.registry import GatewayMetrics
from .alerts import AlertSender
from .blocks import BlockList, subject_key
from .incidents import Change, Incident, IncidentBook
from .settings import RespondSettings

__all__ = ["Responder", "IncidentStore", "ACTOR"]

log = logging.getLogger("keyguard.respond")
ACTOR = "system:monitor"
_SAVE_EVERY_S = 10.0  # a busy incident's count is written at most this often


class IncidentStore(Protocol):
    """Where incidents and blocks are kept for every replica (:mod:`keyguard.monitor.store`)."""

    async def save_incident(self, incident: Incident) -> Incident: ...

    async def add_block(
        self, subject: str, until: float, rule: str, incident_id: str | None, now: float
    ) -> None: ...


class Responder:
    def __init__(
        self,
        settings: RespondSettings,
        book: IncidentBook,
        *,
        events: EventBus,
        blocks: BlockList,
        store: IncidentStore | None = None,
        keys: KeyService | None = None,
        invalidate: Callable[[str], None] | None = None,
        alerts: AlertSender | None = None,
        metrics: GatewayMetrics | None = None,
        upstreams: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
        publish: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self._publish = publish
        self._s = settings
        self.book = book
        self._events = events
        self._blocks = blocks
        self._store = store
        self._keys = keys
        self._invalidate = invalidate
        self._alerts = alerts
        self._metrics = metrics
        self._upstreams = tuple(upstreams)
        self._clock = clock
        self._saved: dict[str, float] = {}

    def status_changed(self, incident_id: str) -> None:
        """An operator changed the incident's status: save its next repeat at once, so the
        book learns the status the store holds."""
        self._saved.pop(incident_id, None)

    async def handle(
        self, finding: Detection, taken: Sequence[str] = (), *, raised: bool = False
    ) -> Incident:
        """Open or join the finding's incident and carry out the policy's actions;
        ``taken``: responses already under way elsewhere (a rotation the scheduler runs);
        ``raised``: the finding is a security event already on the bus, not emitted again."""
        now = finding.at
        incident, change = self.book.take(finding, now)
        if change != "new":  # it joins an incident: the status the store holds comes first
            incident = await self._save(incident, change, now)
            if incident.status == "resolved":  # by an operator: this finding is a new incident
                incident, change = self.book.take(finding, now)
        actions = self._s.actions(incident.rule, incident.severity)
        done: list[str] = list(taken)
        if change != "repeat":
            if self._metrics is not None:
                self._metrics.count(self._metrics.incidents, incident.rule, incident.severity)
            if self._s.automatic:
                for action in actions:
                    if action != "alert" and await self._act(action, incident, now):
                        done.append(action)
        elif self._s.automatic:
            if "throttle" in actions and await self._renew_throttle(incident, now):
                done.append("throttle")
            address = finding.evidence.get("address")  # a new address of the same abuse
            if (
                "block_source" in actions
                and isinstance(address, str)
                and self._blocks.until("address", address) is None
                and await self._act("block_source", incident, now)
            ):
                done.append("block_source")
        if done:
            incident = self.book.note_actions(incident, done)
        if change != "repeat":
            alerts = self._alerts
            if "alert" in actions and alerts is not None and alerts.send(incident, change):
                incident = self.book.note_actions(incident, ["alert"])
            if not raised:
                self._emit(incident, change)
        if change != "repeat" or done:
            incident = await self._save(incident, change, now, force=True)
        return incident

    def _emit(self, incident: Incident, change: Change) -> None:
        self._events.emit(
            SecurityEvent(
                created=datetime.fromtimestamp(incident.updated_at, UTC),
                kind=incident.rule,
                severity=incident.severity,
                summary=incident.summary,
                key_id=incident.key_id,
                app=incident.app,
                source=incident.source,
                evidence={
                    "incident": incident.id,
                    "change": change,
                    "subject": incident.subject,
                    "count": incident.count,
                    "actions": list(incident.actions),
                    **incident.evidence.get("latest", {}),
                },
            )
        )

    async def _save(
        self, incident: Incident, change: Change, now: float, *, force: bool = False
    ) -> Incident:
        """Save the incident (a repeat at most every ``_SAVE_EVERY_S``, unless ``force``);
        the incident with the status the store holds."""
        if self._store is None:
            return incident
        due = now - self._saved.get(incident.id, 0.0) >= _SAVE_EVERY_S
        if change == "repeat" and not due and not force:
            return incident
        self._saved[incident.id] = now
        if len(self._saved) > 10_000:
            self._saved.clear()
        try:
            stored = await self._store.save_incident(incident)
        except GatewayError as exc:
            log.error("incident %s could not be saved: %s", incident.id, exc)
            return incident
        if stored.status == incident.status:
            return incident
        updated = self.book.set_status(
            incident.id, stored.status, stored.acknowledged_by, stored.acknowledged_at
        )
        return incident if updated is None else updated

    async def _act(self, action: str, incident: Incident, now: float) -> bool:
        try:
            if action == "throttle":
                ok = await self._throttle(incident, now)
            elif action == "block_source":
                address = incident.evidence.get("latest", {}).get("address")
                ok = bool(address) and await self._throttle(incident, now, f"address:{address}")
            elif action == "suspend_key":
                ok = await self._suspend_keys([incident.key_id] if incident.key_id else [], now)
            elif action == "suspend_app":
                ok = await self._suspend_app(incident.app, now)
            elif action == "rotate_upstream":
                ok = self._rotate(incident)
            else:  # pragma: no cover - settings validate actions
                ok = False
        except GatewayError as exc:
            log.error("response %s to incident %s failed: %s", action, incident.id, exc)
            ok = False
        if self._metrics is not None:
            self._metrics.count(self._metrics.responses, action, "done" if ok else "failed")
        return ok

    async def _throttle(self, incident: Incident, now: float, subject: str = "") -> bool:
        subject = subject or incident.subject
        target = subject_key(subject)
        if target is None or target[1] == "None":
            return False
        until = now + self._s.throttle_s
        self._blocks.add(target[0], target[1], until)
        if self._publish is not None:  # every replica refuses it at once, not at its next poll
            self._publish("block", {"kind": target[0], "name": target[1], "until": until})
        if self._store is not None:
            await self._store.add_block(subject, until, incident.rule, incident.id, now)
        log.warning("blocked %s for %.0f s (incident %s)", subject, self._s.throttle_s, incident.id)
        return True

    async def _renew_throttle(self, incident: Incident, now: float) -> bool:
        target = subject_key(incident.subject)
        if target is None or self._blocks.until(*target) is not None:
            return False
        try:
            return await self._throttle(incident, now)
        except GatewayError as exc:
            log.error("renewing the throttle of %s failed: %s", incident.subject, exc)
            return False

    async def _suspend_keys(self, key_ids: list[str], now: float) -> bool:
        if self._keys is None or not key_ids:
            return False
        at = datetime.fromtimestamp(max(now, self._clock()), UTC)
        for key_id in key_ids:
            record = await self._keys.suspend(key_id, now=at)
            if self._invalidate is not None:
                self._invalidate(key_id)
            self._events.emit(
                AdminAction(
                    created=at,
                    actor=ACTOR,
                    action="keys.suspend",
                    target=f"key:{key_id}",
                    after={"app": record.app, "suspended_at": at.isoformat()},
                )
            )
            log.warning("suspended key %s (app %s) automatically", key_id, record.app)
        return True

    async def _suspend_app(self, app: str | None, now: float) -> bool:
        if self._keys is None or app is None:
            return False
        at = datetime.fromtimestamp(max(now, self._clock()), UTC)
        records = await self._keys.list(app=app, now=at)
        return await self._suspend_keys([r.key_id for r in records], now)

    def _rotate(self, incident: Incident) -> bool:
        upstreams = self._upstreams
        if not upstreams:
            return False
        for name in upstreams:
            self._events.emit(
                SecurityEvent(
                    created=datetime.fromtimestamp(incident.updated_at, UTC),
                    kind="rotate_upstream_requested",
                    severity=incident.severity,
                    summary=f"Incident {incident.id} ({incident.rule}) asks to rotate the key.",
                    upstream=name,
                    key_id=incident.key_id,
                    app=incident.app,
                    source=incident.source,
                    evidence={"incident": incident.id, "rule": incident.rule},
                )
            )
        return True
