"""What the emulator's Content Safety endpoints keep between calls (see :mod:`.content_safety`).

Blocklists, the last 256 calls received (operation, JSON body, caller slot), pending faults
(the data plane's fault format, plus ``answer``: ``garbage``, ``huge`` or ``invalid``) and an
optional hold every call waits on before it answers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keyguard.emulator.faults import Fault, parse_fault, take_fault
from keyguard.emulator.safety_detector import BlocklistItem

__all__ = ["ContentSafetyState", "Received"]

_FAULT_TARGET = "contentsafety"


@dataclass(frozen=True, slots=True)
class Received:
    """One call as the emulator received it: the operation, its JSON body, the caller."""

    operation: str
    body: Any
    caller: str


class ContentSafetyState:
    """Blocklists, the last 256 calls received, pending faults and an optional hold."""

    def __init__(self) -> None:
        self.blocklists: dict[str, list[BlocklistItem]] = {}
        self.received: deque[Received] = deque(maxlen=256)
        self._faults: tuple[Fault, ...] = ()
        self._answers: dict[str, str] = {}
        self._count = 0
        self._hold: asyncio.Event | None = None

    def add_blocklist(self, name: str, items: list[str]) -> None:
        self.blocklists[name] = [
            BlocklistItem(name, f"{name}-{index}", text) for index, text in enumerate(items, 1)
        ]

    def add_fault(self, raw: Mapping[str, Any], now: float) -> Fault:
        """Queue a fault (``ValueError`` when invalid); ``answer`` is this module's own."""
        raw = dict(raw)
        answer = raw.pop("answer", None)
        if answer is not None and answer not in ("garbage", "huge", "invalid"):
            raise ValueError("answer must be 'garbage', 'huge' or 'invalid'")
        if answer is not None and "status" not in raw and "latency_ms" not in raw:
            raw["latency_ms"] = 1  # parse_fault wants one effect; the answer is ours
        self._count += 1
        fault = parse_fault(raw, f"cs-fault-{self._count}", now)
        if answer is not None:
            self._answers[fault.id] = answer
        self._faults = (*self._faults, fault)
        return fault

    def take_fault(self, now: float) -> tuple[Fault | None, str | None]:
        fault, self._faults = take_fault(self._faults, _FAULT_TARGET, now)
        return fault, (self._answers.get(fault.id) if fault is not None else None)

    def record(self, operation: str, body: Any, caller: str) -> None:
        self.received.append(Received(operation, body, caller))

    def hold(self) -> asyncio.Event:
        """An event every call waits on before answering, until it is set (then forgotten)."""
        self._hold = asyncio.Event()
        return self._hold

    async def wait_hold(self) -> None:
        held = self._hold
        if held is not None:
            await held.wait()
            if self._hold is held:
                self._hold = None

    def reset(self) -> None:
        self.received.clear()
        self._faults = ()
        self._answers.clear()
        if self._hold is not None:
            self._hold.set()
        self._hold = None
