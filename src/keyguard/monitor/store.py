"""The monitor's tables: incidents, temporary blocks and detector baselines (SQLite/PostgreSQL).

The status of an incident here is the authority: the responder's save never writes it over an
existing row, so an operator's acknowledgement or resolution, made on any replica, holds; and
a resolved incident is never updated again (a new finding of it is a new incident).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..respond.incidents import Incident
from ..store.schema import detect_profiles, monitor_blocks, monitor_incidents
from ..store.sql import translate_errors, write_transaction

__all__ = ["MonitorStore"]


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _incident(row: Any) -> Incident:
    m = row._mapping
    return Incident(
        id=m["id"],
        rule=m["rule"],
        severity=m["severity"],
        subject=m["subject"],
        summary=m["summary"],
        created_at=m["created_at"].timestamp(),
        updated_at=m["updated_at"].timestamp(),
        key_id=m["key_id"],
        app=m["app"],
        source=m["source"],
        count=m["count"],
        status=m["status"],
        evidence=orjson.loads(m["evidence"]),
        actions=tuple(orjson.loads(m["actions"])),
        acknowledged_by=m["acknowledged_by"],
        acknowledged_at=None if m["acknowledged_at"] is None else m["acknowledged_at"].timestamp(),
    )


class MonitorStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- incidents -------------------------------------------------------------------------

    async def save_incident(self, incident: Incident) -> Incident:
        """Write a new incident, or a repeat's count, severity, evidence and actions onto an
        open or acknowledged one (never its status, nor a resolved one); the incident as
        stored, whose status the caller takes."""
        t = monitor_incidents
        values = {
            "rule": incident.rule,
            "severity": incident.severity,
            "subject": incident.subject[:160],
            "key_id": incident.key_id,
            "app": incident.app,
            "source": incident.source,
            "summary": incident.summary,
            "evidence": orjson.dumps(incident.evidence, default=str).decode(),
            "actions": orjson.dumps(list(incident.actions)).decode(),
            "count": incident.count,
            "updated_at": _dt(incident.updated_at),
        }
        async with write_transaction(self._engine, "save incident") as conn:
            result = await conn.execute(
                update(t).where(t.c.id == incident.id, t.c.status != "resolved").values(**values)
            )
            row = (await conn.execute(select(t).where(t.c.id == incident.id))).first()
            if result.rowcount == 0 and row is None:
                await conn.execute(
                    t.insert().values(
                        id=incident.id,
                        status=incident.status,
                        created_at=_dt(incident.created_at),
                        **values,
                    )
                )
                return incident
        return incident if row is None else _incident(row)

    async def incidents(
        self, *, since: datetime | None = None, status: str | None = None, limit: int = 200
    ) -> list[Incident]:
        query = select(monitor_incidents).order_by(monitor_incidents.c.created_at.desc())
        if since is not None:
            query = query.where(monitor_incidents.c.updated_at >= since)
        if status == "unresolved":
            query = query.where(monitor_incidents.c.status != "resolved")
        elif status is not None:
            query = query.where(monitor_incidents.c.status == status)
        async with translate_errors("list incidents"), self._engine.connect() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [_incident(r) for r in rows]

    async def set_status(self, incident_id: str, status: str, now: datetime) -> Incident | None:
        async with write_transaction(self._engine, "update incident") as conn:
            await conn.execute(
                update(monitor_incidents)
                .where(monitor_incidents.c.id == incident_id)
                .values(status=status, updated_at=now)
            )
            row = (
                await conn.execute(
                    select(monitor_incidents).where(monitor_incidents.c.id == incident_id)
                )
            ).first()
        return None if row is None else _incident(row)

    async def acknowledge(self, incident_id: str, by: str, now: datetime) -> Incident | None:
        """Mark an open incident acknowledged by ``by``; one already acknowledged keeps who
        and when it was first, a resolved one stays resolved. The incident as stored, or
        ``None`` when there is none with that id."""
        t = monitor_incidents
        async with translate_errors("acknowledge incident"), self._engine.begin() as conn:
            await conn.execute(
                update(t)
                .where(t.c.id == incident_id, t.c.status == "open")
                .values(status="acknowledged", acknowledged_by=by[:160], acknowledged_at=now)
            )
            row = (await conn.execute(select(t).where(t.c.id == incident_id))).first()
        return None if row is None else _incident(row)

    # -- blocks ----------------------------------------------------------------------------

    async def add_block(
        self, subject: str, until: float, rule: str, incident_id: str | None, now: float
    ) -> None:
        values = {"until": _dt(until), "rule": rule, "incident_id": incident_id}
        async with write_transaction(self._engine, "write block") as conn:
            result = await conn.execute(
                update(monitor_blocks).where(monitor_blocks.c.subject == subject).values(**values)
            )
            if result.rowcount == 0:
                try:
                    async with conn.begin_nested():
                        await conn.execute(
                            monitor_blocks.insert().values(
                                subject=subject, created_at=_dt(now), **values
                            )
                        )
                except IntegrityError:  # written meanwhile by another replica
                    pass

    async def active_blocks(self, now: float) -> dict[str, float]:
        query = select(monitor_blocks.c.subject, monitor_blocks.c.until).where(
            monitor_blocks.c.until > _dt(now)
        )
        async with translate_errors("read blocks"), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {r.subject: r.until.timestamp() for r in rows}

    async def remove_blocks(
        self, *, subject: str | None = None, incident_id: str | None = None
    ) -> list[str]:
        """Remove the matching blocks; the subjects they were on."""
        query = delete(monitor_blocks)
        if subject is not None:
            query = query.where(monitor_blocks.c.subject == subject)
        if incident_id is not None:
            query = query.where(monitor_blocks.c.incident_id == incident_id)
        async with write_transaction(self._engine, "remove blocks") as conn:
            removed = await conn.execute(query.returning(monitor_blocks.c.subject))
            return [row.subject for row in removed.all()]

    # -- baselines -------------------------------------------------------------------------

    async def save_profiles(self, profiles: dict[str, dict[str, Any]], now: float) -> None:
        if not profiles:
            return
        async with write_transaction(self._engine, "save baselines") as conn:
            await conn.execute(
                delete(detect_profiles).where(detect_profiles.c.subject.in_(list(profiles)))
            )
            await conn.execute(
                detect_profiles.insert(),
                [
                    {"subject": s, "data": orjson.dumps(d).decode(), "updated_at": _dt(now)}
                    for s, d in profiles.items()
                ],
            )

    async def load_profiles(self) -> list[tuple[str, dict[str, Any]]]:
        async with translate_errors("load baselines"), self._engine.connect() as conn:
            rows = (await conn.execute(select(detect_profiles))).all()
        return [(r.subject, orjson.loads(r.data)) for r in rows]
