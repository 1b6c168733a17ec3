"""Injected faults for the next N data-plane requests, or for a duration (pure functions).

A fault is posted to ``POST /_emulator/faults`` as JSON::

    {"status": 429, "retry_after": 3, "count": 2}          # two 429s with retry-after: 3
    {"status": 503, "duration_s": 5, "deployment": "gpt-4o"}
    {"latency_ms": 250, "count": 10}                        # slow, then answers normally
    {"drop": "mid_stream", "after_chunks": 3}               # connection cut mid-answer
    {"drop": "before_response"}                             # connection cut, no answer

``count`` defaults to 1 when neither ``count`` nor ``duration_s`` is given. Faults apply in
the order they were posted; the first one matching the request's deployment is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

__all__ = ["Fault", "DropMode", "parse_fault", "take_fault", "fault_view"]

DropMode = Literal["before_response", "mid_stream"]
_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_KEYS = frozenset(
    {"status", "retry_after", "latency_ms", "drop", "after_chunks", "deployment"}
    | {"count", "duration_s", "message"}
)


@dataclass(frozen=True, slots=True)
class Fault:
    id: str
    status: int | None = None
    retry_after: int = 1
    latency_ms: int = 0
    drop: DropMode | None = None
    after_chunks: int = 2
    deployment: str | None = None
    #: Requests still to be hit; ``None`` when the fault is bounded by ``until`` only.
    remaining: int | None = 1
    until: float | None = None
    message: str | None = None


def _int(raw: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{key} must be an integer in [{low}, {high}]")
    return value


def parse_fault(raw: Mapping[str, Any], fault_id: str, now: float) -> Fault:
    """Validate a posted fault; raise ``ValueError`` naming the bad field."""
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    status = raw.get("status")
    if status is not None and status not in _STATUSES:
        raise ValueError(f"status must be one of {sorted(_STATUSES)}")
    drop = raw.get("drop")
    if drop is not None and drop not in ("before_response", "mid_stream"):
        raise ValueError("drop must be 'before_response' or 'mid_stream'")
    if status is not None and drop is not None:
        raise ValueError("give status or drop, not both")
    latency = _int(raw, "latency_ms", 0, 0, 600_000)
    if status is None and drop is None and latency == 0:
        raise ValueError("a fault needs status, drop or latency_ms")
    deployment = raw.get("deployment")
    if deployment is not None and not isinstance(deployment, str):
        raise ValueError("deployment must be a string")
    message = raw.get("message")
    if message is not None and not isinstance(message, str):
        raise ValueError("message must be a string")
    duration = raw.get("duration_s")
    if duration is not None and (
        not isinstance(duration, int | float) or isinstance(duration, bool) or duration <= 0
    ):
        raise ValueError("duration_s must be a positive number")
    count: int | None = None
    if "count" in raw or duration is None:
        count = _int(raw, "count", 1, 1, 1_000_000)
    return Fault(
        id=fault_id,
        status=status,
        retry_after=_int(raw, "retry_after", 1, 0, 86_400),
        latency_ms=latency,
        drop=drop,
        after_chunks=_int(raw, "after_chunks", 2, 0, 1_000_000),
        deployment=deployment,
        remaining=count,
        until=None if duration is None else now + float(duration),
        message=message,
    )


def _live(fault: Fault, now: float) -> bool:
    if fault.until is not None and now >= fault.until:
        return False
    return fault.remaining is None or fault.remaining > 0


def take_fault(
    faults: tuple[Fault, ...], deployment: str, now: float
) -> tuple[Fault | None, tuple[Fault, ...]]:
    """The fault to apply to one request (or ``None``) and the faults left afterwards."""
    live = tuple(f for f in faults if _live(f, now))
    for position, fault in enumerate(live):
        if fault.deployment is not None and fault.deployment != deployment:
            continue
        if fault.remaining is None:
            return fault, live
        used = replace(fault, remaining=fault.remaining - 1)
        rest = live[:position] + ((used,) if _live(used, now) else ()) + live[position + 1 :]
        return fault, rest
    return None, live


def fault_view(fault: Fault) -> dict[str, Any]:
    """JSON view of a fault for ``GET /_emulator/faults``."""
    return {
        "id": fault.id,
        "status": fault.status,
        "retry_after": fault.retry_after,
        "latency_ms": fault.latency_ms,
        "drop": fault.drop,
        "after_chunks": fault.after_chunks,
        "deployment": fault.deployment,
        "remaining": fault.remaining,
        "until": fault.until,
        "message": fault.message,
    }
