"""The audit queue: records serialised one by one as they come, bounded, losses counted.

:meth:`RecordQueue.put` is synchronous and O(1) apart from serialising the record: the
monitor and the event bus call it. Each record becomes its canonical JSON *here*, alone, so a
value that cannot be written (an integer beyond 64 bits, a lone surrogate, a record over
``max_record_bytes``) is refused alone: it is replaced by a short record saying so (the chain
still shows that a request happened), counted in ``rejected``, logged, and reported as a
security event (the first at once, then at most one a minute with the count). Whatever is
queued is then plain text that a write cannot choke on.

The queue holds at most ``max_queue`` records; beyond, a record is dropped and counted in
``dropped``. At 90% (:attr:`RecordQueue.full`) the gateway stops taking requests it could not
record (``on_full: refuse``: 503) or raises a critical security event and carries on
(``serve_unaudited``); the last 10% is room for the requests already under way.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..events import SecurityEvent, Severity
from .chain import canonical, canonical_bytes
from .settings import AuditSettings

__all__ = ["KINDS", "RecordQueue"]

log = logging.getLogger("keyguard.audit")

KINDS = frozenset({"request", "admin", "security", "segment"})
FULL_AT = 0.9  # of max_queue: the queue counts as full (the gateway refuses or alerts)
_REPORT_EVERY_S = 60.0  # refused and dropped records are reported at most this often

Item = tuple[float, str, str]  # (time, kind, canonical JSON)


class RecordQueue:
    def __init__(
        self,
        settings: AuditSettings,
        *,
        clock: Callable[[], float],
        alert: Callable[[SecurityEvent], None] | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._alert = alert
        # plain values only, which the garbage collector does not track
        self._items: deque[Item] = deque()
        self._writing = 0  # taken by the writer and not written yet: still held in memory
        self._limit = settings.max_queue
        self._full_at = int(settings.max_queue * FULL_AT)
        self._closed = False
        self.full = False
        self.dropped = 0
        self.rejected = 0
        self.accepted = 0  # records queued so far (a record's ticket: the count after it)
        self.done = 0  # of those, written so far (records are written in the order queued)
        self._reported: dict[str, tuple[float, int]] = {}  # what -> (last reported, count then)

    def __len__(self) -> int:
        """Records waiting, those being written included."""
        return len(self._items) + self._writing

    def put(self, kind: str, data: Any, at: float | None = None) -> bool:
        """Queue a record; ``False`` when it was dropped (queue full, or closed). Never raises."""
        items = self._items
        at = self._clock() if at is None else at
        if self._closed or len(items) + self._writing >= self._limit:
            self.dropped += 1
            self._report(
                "dropped",
                self.dropped,
                "an audit record was dropped"
                if self._closed
                else "the audit queue is full: records are dropped",
            )
            return False
        try:
            if kind not in KINDS:
                raise ValueError(f"not a record kind: {kind[:16]!r}")
            raw = canonical_bytes(data)
            if len(raw) > self._settings.max_record_bytes:
                raise ValueError(f"{len(raw)} bytes, over max_record_bytes")
            text = raw.decode()
        except (TypeError, ValueError) as exc:  # orjson's errors are TypeErrors
            self.rejected += 1
            kind, text = (
                (kind if kind in KINDS else "security"),
                canonical(_unrecordable(data, exc)),
            )
            self._report(
                "rejected",
                self.rejected,
                f"an audit record could not be written as "
                f"it was ({type(exc).__name__}: {str(exc)[:120]})",
            )
        items.append((at, kind, text))
        self.accepted += 1
        if not self.full and len(items) + self._writing >= self._full_at:
            self.full = True
            self._on_full()
        return True

    def put_last(self, kind: str, data: Any, at: float) -> None:
        """The writer's own closing record: past the bound; nothing is taken after it."""
        self._items.append((at, kind, canonical(data)))
        self.accepted += 1
        self._closed = True

    def oldest(self) -> float | None:
        """The time of the oldest record waiting (not being written), if any: O(1)."""
        return self._items[0][0] if self._items else None

    def waiting(self) -> bool:
        """Whether records wait that are not being written."""
        return bool(self._items)

    def take(self, n: int) -> list[Item]:
        """Up to ``n`` records for the writer; they count until :meth:`written` or
        :meth:`give_back`."""
        items = self._items
        batch = [items.popleft() for _ in range(min(n, len(items)))]
        self._writing += len(batch)
        return batch

    def written(self, n: int) -> None:
        self._writing -= n
        self.done += n

    def give_back(self, batch: list[Item]) -> None:
        """Put back records taken but not written (in front, in order)."""
        self._writing -= len(batch)
        self._items.extendleft(reversed(batch))

    def settle(self) -> None:
        """After a write: the queue no longer counts as full once it is under half the mark."""
        if self.full and len(self) < self._full_at // 2:
            self.full = False
            log.warning("audit: the queue drained (%d records waiting)", len(self))

    def _on_full(self) -> None:
        refuse = self._settings.on_full == "refuse"
        what = (
            "new requests are refused (503) until it drains"
            if refuse
            else "requests are still served (on_full: serve_unaudited); records that do not "
            "fit are dropped and counted"
        )
        summary = (
            f"The audit queue is {int(FULL_AT * 100)}% full ({len(self)} records waiting: "
            f"the store is down or slower than the traffic); {what}."
        )
        log.error("audit: %s", summary)
        self._event(
            "audit_queue_full",
            "high" if refuse else "critical",
            summary,
            {"waiting": len(self), "max_queue": self._limit},
        )

    def _report(self, what: str, count: int, summary: str) -> None:
        now = self._clock()
        last, then = self._reported.get(what, (float("-inf"), 0))
        if now - last < _REPORT_EVERY_S:
            return
        self._reported[what] = (now, count)
        log.error("audit: %s (%d so far)", summary, count)
        if what == "rejected":
            self._event(
                "audit_record_refused",
                "high",
                f"{summary}; {count - then} since the "
                "last report, each replaced by a record saying so",
                {"count": count - then, "total": count},
            )

    def _event(self, kind: str, severity: Severity, summary: str, evidence: dict[str, Any]) -> None:
        if self._alert is None:
            return
        at = datetime.fromtimestamp(self._clock(), UTC)
        self._alert(SecurityEvent(at, kind, severity, summary, evidence=evidence))


def _unrecordable(data: Any, exc: Exception) -> dict[str, Any]:
    """What is kept of a record that cannot be written: that it existed, its request id when
    it has a plain one, and why."""
    rid = data.get("request_id") if isinstance(data, dict) else None
    return {
        "unrecordable": f"{type(exc).__name__}: {str(exc)[:120]}",
        "request_id": rid if isinstance(rid, str) and len(rid) <= 64 and rid.isalnum() else None,
    }
