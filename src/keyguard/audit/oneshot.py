"""Audit from short-lived processes (the CLI): write events straight to the chain.

The gateway queues audit records and writes them in batches (:mod:`.writer`); a CLI command
that changes something writes its :class:`~keyguard.events.AdminAction` at once, in the same
chain::

    async with recording(events, engine):    # events emitted on ``events`` are audited
        await keys.suspend(key_id, now=now)
        events.emit(AdminAction(...))
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from ..events import AdminAction, Event, EventBus, SecurityEvent
from .chain import canonical
from .records import admin_record, security_record
from .store import AuditStore, iso

__all__ = ["append_events", "recording"]


async def append_events(engine: AsyncEngine, events: Sequence[Event]) -> None:
    items = []
    for event in events:
        if isinstance(event, AdminAction):
            items.append((iso(event.created), "admin", canonical(admin_record(event))))
        elif isinstance(event, SecurityEvent):
            items.append((iso(event.created), "security", canonical(security_record(event))))
    await AuditStore(engine).append(items)


@asynccontextmanager
async def recording(events: EventBus, engine: AsyncEngine | None) -> AsyncIterator[EventBus]:
    """Collect the events emitted on ``events`` in the block and append them to the audit
    chain in ``engine`` at its end (also when it fails part-way: what was done is recorded).
    Without an engine (the audit is off) nothing is written."""
    seen: list[Event] = []
    events.subscribe(seen.append)
    try:
        yield events
    finally:
        if seen and engine is not None:
            await append_events(engine, seen)
