"""The admin service's functions over what the gateway observed: the incidents every replica
records (list, acknowledge, resolve and lift the throttles they put in place) and the usage
read-out.

An operator's status is kept in the store, the authority every replica's responder defers to
(:mod:`keyguard.respond.responder`): acknowledging says someone is on it (who and when are
kept; repeats still count on it); resolving closes it (a later finding opens a new one)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from ..errors import BadRequest, NotFound, RequestError, shown
from ..respond.incidents import Incident
from .recording import Actor, Recorded, key_target
from .usage import UsageQuery, UsageReport

__all__ = ["IncidentActions", "IncidentResolved", "Incidents", "LISTED_STATUSES"]

_INCIDENT_ID = re.compile(r"[0-9a-f]{16}")
#: what ``status`` may ask for: one status, or ``unresolved`` (open and acknowledged)
LISTED_STATUSES = ("open", "acknowledged", "resolved", "unresolved")


class IncidentResolved(RequestError):
    """A resolved incident cannot be acknowledged (a new finding opens a new incident)."""

    status = 409
    code = "IncidentResolved"


class Incidents(Protocol):
    """The incidents every replica records (:class:`keyguard.monitor.store.MonitorStore`)."""

    async def incidents(
        self, *, since: datetime | None = None, status: str | None = None, limit: int = 200
    ) -> list[Incident]: ...

    async def set_status(self, incident_id: str, status: str, now: datetime) -> Incident | None: ...

    async def acknowledge(self, incident_id: str, by: str, now: datetime) -> Incident | None: ...

    async def remove_blocks(
        self, *, subject: str | None = None, incident_id: str | None = None
    ) -> list[str]: ...


class IncidentActions(Recorded):
    _incidents: Incidents | None
    _usage: UsageReport | None
    _on_blocks_lifted: Callable[[list[str]], None] | None
    _on_incident_change: Callable[[str], None] | None

    async def usage(self, actor: Actor, query: UsageQuery) -> dict[str, Any]:
        """Each limit and budget that applies, its use and what remains; spend over a period
        (:mod:`.usage`). Reading changes no counter."""
        scope, name = query[0], query[1]
        target = "usage" if name is None else f"{scope}:{name}"
        if scope == "key" or (name is not None and shown(name) != repr(name)):
            target = key_target(name or "") if scope == "key" else f"{scope}:?"
        self._record(actor, "usage.read", target)
        if self._usage is None:
            raise BadRequest("the usage read-out is not available here", reason="no_usage")
        return await self._usage.report(query, self._clock())

    # -- incidents -------------------------------------------------------------------------

    async def list_incidents(
        self,
        actor: Actor,
        *,
        since: datetime | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[Incident]:
        """Every incident (detector findings, raw keys, leaks, budget thresholds, ...),
        newest first."""
        if status is not None and status not in LISTED_STATUSES:
            raise BadRequest(
                "'status' must be open, acknowledged, resolved or unresolved",
                reason="invalid_status",
            )
        self._record(actor, "alerts.list", "alerts")
        if self._incidents is None:
            return []
        return await self._incidents.incidents(
            since=since, status=status, limit=max(1, min(limit, 10_000))
        )

    async def acknowledge_incident(self, actor: Actor, incident_id: str) -> Incident:
        """Mark an open incident acknowledged by ``actor``: it stays so while its finding
        repeats (the count grows), until it is resolved. Acknowledging it again changes nothing
        (who and when stay the first); a resolved incident cannot be (409)."""
        if self._incidents is None or not _INCIDENT_ID.fullmatch(incident_id):
            raise NotFound(f"no incident with id {shown(incident_id)}", reason="unknown_incident")
        incident = await self._incidents.acknowledge(incident_id, actor.id, self._clock())
        if incident is None:
            raise NotFound(f"no incident with id {shown(incident_id)}", reason="unknown_incident")
        target = f"incident:{incident_id}"
        if incident.status == "resolved":
            self._record(actor, "alerts.acknowledge", target, after={"refused": "resolved"})
            raise IncidentResolved(
                f"incident {incident_id} is resolved; a new finding opens a new incident",
                reason="incident_resolved",
            )
        self._record(
            actor,
            "alerts.acknowledge",
            target,
            after={"status": "acknowledged", "acknowledged_by": incident.acknowledged_by},
        )
        if self._on_incident_change is not None:
            self._on_incident_change(incident_id)
        return incident

    async def resolve_incident(self, actor: Actor, incident_id: str) -> tuple[Incident, int]:
        """Mark an incident resolved and lift the throttles it put in place (a suspended key
        stays suspended); the incident and how many throttles were lifted. A later finding
        of the same rule on the same subject opens a new incident."""
        if self._incidents is None or not _INCIDENT_ID.fullmatch(incident_id):
            raise NotFound(f"no incident with id {shown(incident_id)}", reason="unknown_incident")
        now = self._clock()
        incident = await self._incidents.set_status(incident_id, "resolved", now)
        if incident is None:
            raise NotFound(f"no incident with id {shown(incident_id)}", reason="unknown_incident")
        if self._on_incident_change is not None:
            self._on_incident_change(incident_id)
        subjects = await self._incidents.remove_blocks(incident_id=incident_id)
        if subjects and self._on_blocks_lifted is not None:
            self._on_blocks_lifted(subjects)
        lifted = len(subjects)
        self._record(
            actor,
            "alerts.resolve",
            f"incident:{incident_id}",
            after={"status": "resolved", "throttles_lifted": lifted},
        )
        return incident, lifted
