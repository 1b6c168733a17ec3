"""The admin service's functions over what the gateway observed: the incidents every replica
records (list, resolve and lift the throttles they put in place) and the usage read-out."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from ..errors import BadRequest, NotFound, shown
from ..respond.incidents import Incident
from .recording import Actor, Recorded, key_target
from .usage import UsageQuery, UsageReport

__all__ = ["IncidentActions", "Incidents"]

_INCIDENT_ID = re.compile(r"[0-9a-f]{16}")


class Incidents(Protocol):
    """The incidents every replica records (:class:`keyguard.monitor.store.MonitorStore`)."""

    async def incidents(
        self, *, since: datetime | None = None, status: str | None = None, limit: int = 200
    ) -> list[Incident]: ...

    async def set_status(self, incident_id: str, status: str, now: datetime) -> Incident | None: ...

    async def remove_blocks(
        self, *, subject: str | None = None, incident_id: str | None = None
    ) -> list[str]: ...


class IncidentActions(Recorded):
    _incidents: Incidents | None
    _usage: UsageReport | None
    _on_blocks_lifted: Callable[[list[str]], None] | None

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
        if status not in (None, "open", "resolved"):
            raise BadRequest("'status' must be open or resolved", reason="invalid_status")
        self._record(actor, "alerts.list", "alerts")
        if self._incidents is None:
            return []
        return await self._incidents.incidents(
            since=since, status=status, limit=max(1, min(limit, 10_000))
        )

    async def resolve_incident(self, actor: Actor, incident_id: str) -> tuple[Incident, int]:
        """Mark an incident resolved and lift the throttles it put in place (a suspended key
        stays suspended); the incident and how many throttles were lifted."""
        if self._incidents is None or not _INCIDENT_ID.fullmatch(incident_id):
            raise NotFound(f"no incident with id {shown(incident_id)}", reason="unknown_incident")
        now = self._clock()
        incident = await self._incidents.set_status(incident_id, "resolved", now)
        if incident is None:
            raise NotFound(f"no incident with id {shown(incident_id)}", reason="unknown_incident")
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
