"""Audit from short-lived processes (the CLI): write events straight to the chain.

The gateway queues audit records and writes them in batches (:mod:`.writer`); a CLI command
that changes something writes its :class:`~keyguard.events.AdminAction` before it returns, in
the same chain, as a writer of its own (its segment, sealed with the vault's signing key, the
checkpoint anchored when an anchor file is configured)::

    async with recording(events, engine, vault, settings):   # events emitted are audited
        await keys.suspend(key_id, now=now)
        events.emit(AdminAction(...))
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from ..events import AdminAction, Event, EventBus, SecurityEvent
from ..vault.vault import Vault
from .anchor import FileAnchor
from .records import admin_record, security_record
from .settings import AuditSettings
from .signing import load_signer
from .store import AuditStore
from .writer import AuditWriter

__all__ = ["append_events", "recording"]


async def append_events(
    engine: AsyncEngine,
    events: Sequence[Event],
    vault: Vault,
    settings: AuditSettings | None = None,
) -> None:
    """Write ``events`` as one writer's segment; what the writer finds wrong with the log
    (logged as critical) is written after them."""
    settings = settings or AuditSettings()
    anchor = FileAnchor(settings.anchor_file) if settings.anchor_file else None
    found: list[Event] = []
    writer = AuditWriter(
        AuditStore(engine), settings, signer=await load_signer(vault), anchor=anchor,
        emit=found.append,
    )  # fmt: skip
    try:
        await writer.open()
        for event in [*events, *found]:
            if isinstance(event, AdminAction):
                writer.append("admin", admin_record(event), event.created.timestamp())
            elif isinstance(event, SecurityEvent):
                writer.append("security", security_record(event), event.created.timestamp())
    finally:
        await writer.close()


@asynccontextmanager
async def recording(
    events: EventBus,
    engine: AsyncEngine | None,
    vault: Vault,
    settings: AuditSettings | None = None,
) -> AsyncIterator[EventBus]:
    """Collect the events emitted on ``events`` in the block and append them to the audit
    chain in ``engine`` at its end (also when it fails part-way: what was done is recorded).
    Without an engine (the audit is off) nothing is written."""
    seen: list[Event] = []
    events.subscribe(seen.append)
    try:
        yield events
    finally:
        if seen and engine is not None:
            await append_events(engine, seen, vault, settings)
