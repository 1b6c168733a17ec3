"""Events: typed, frozen records of what happened, sent to pluggable sinks through one seam.

Producers call :meth:`EventBus.emit`; sinks (the audit log, detectors, alerting, automatic
responses) subscribe. ``emit`` never blocks and never raises: a sink that needs I/O queues the
work, and a failing sink is logged and skipped. Events carry no secrets: key ids, app names,
addresses, reasons and counts only.

* :class:`AdminAction`   an operator changed something (who, what, on what, before/after);
* :class:`SecurityEvent` something that needs a human or an automatic response (a raw Azure
                         key presented, a leaked key found, abuse detected, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = ["AdminAction", "SecurityEvent", "Event", "EventBus", "Severity"]

log = logging.getLogger("keyguard.events")

Severity = Literal["low", "medium", "high", "critical"]


@dataclass(frozen=True, slots=True)
class AdminAction:
    created: datetime
    actor: str  # "cli:<os user>", "admin-token:<id>", "entra:<oid>", "system"
    action: str  # "keys.create", "keys.revoke", "vault.put", "policy.update", ...
    target: str  # "key:<key_id>", "secret:<name>", ...
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    created: datetime
    kind: str  # "raw_azure_key_presented", "leaked_key", "velocity", ...
    severity: Severity
    summary: str
    key_id: str | None = None
    app: str | None = None
    upstream: str | None = None
    source: str | None = None  # client address, file path, ...
    evidence: Mapping[str, Any] = field(default_factory=dict)


Event = AdminAction | SecurityEvent
Sink = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._sinks: list[Sink] = []

    def subscribe(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def emit(self, event: Event) -> None:
        for sink in self._sinks:
            try:
                sink(event)
            except Exception:
                log.exception("event sink %r failed on %s", sink, type(event).__name__)
