"""Delivery to a SIEM that may be slow or down: a bounded buffer, a sender thread, back-off.

Every network sink of the audit (:mod:`.hec`, :mod:`.sentinel`, syslog in :mod:`.sinks`) is a
:class:`Stream`: the writer hands it committed lines (:meth:`Stream.write`, O(lines), never
waits for the network), and one thread of its own sends them in order, in batches of at
most ``batch_lines`` lines and ``batch_bytes`` bytes, through the subclass's ``_send``. A
batch that fails is sent again after a back-off (``initial_s`` doubling to ``max_s``), or
after the receiver's ``Retry-After`` when it gave one (at most :data:`MAX_RETRY_AFTER_S`), until
it goes through: the stream never skips or reorders a line. The buffer holds at most
``max_lines`` lines and ``max_bytes`` characters (:data:`MAX_BUFFER_BYTES`); when the receiver
is down that long the oldest lines are dropped and counted (``dropped``); a line longer than a
batch may be is refused alone and counted (``rejected``).
Both are losses the writer reports as a security event; the store keeps every record (export
and resend). :meth:`Stream.lag` is the age of the oldest line not yet delivered.

The decisions are pure functions (:func:`wait_after`, :func:`retry_after_s`, :func:`take_batch`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

__all__ = [
    "Attempt",
    "LossReport",
    "DELIVERED",
    "MAX_RETRY_AFTER_S",
    "line_bytes",
    "Stream",
    "retry_after_s",
    "take_batch",
    "wait_after",
]

log = logging.getLogger("keyguard.audit")

#: a receiver's Retry-After is followed up to this long (a hostile or broken one asking for
#: a day does not stall the stream for a day)
MAX_RETRY_AFTER_S = 300.0

#: characters of lines a stream holds at most, whatever their number (records with content can
#: be long): beyond, the oldest are dropped and counted as when ``max_lines`` is reached
MAX_BUFFER_BYTES = 256 * 1024 * 1024

Line = tuple[int, float, str]  # (number, time handed over, line)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one send came to: delivered, or to be retried (after ``retry_after`` seconds when
    the receiver said so)."""

    ok: bool
    retry_after: float | None = None


DELIVERED = Attempt(True)


def wait_after(attempt: Attempt, delay: float) -> float:
    """How long to wait before sending a failed batch again (pure): the back-off, or the
    receiver's Retry-After when longer (bounded by :data:`MAX_RETRY_AFTER_S`)."""
    if attempt.retry_after is None:
        return delay
    return max(delay, min(attempt.retry_after, MAX_RETRY_AFTER_S))


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds of a ``Retry-After`` header (delta seconds or an HTTP date), ``None`` when
    absent or unreadable (pure)."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text[:9])
    try:
        return max(0.0, parsedate_to_datetime(text).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


def line_object(line: str) -> dict[str, Any]:
    """An export line's JSON object, or ``{}`` when it is none (a stream never fails on one)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    return obj if isinstance(obj, dict) else {}


def line_bytes(line: str) -> int:
    """What a line adds to a batch by default: its UTF-8 length and a separator."""
    return len(line.encode()) + 1


def take_batch(
    lines: Sequence[Line], max_lines: int, max_bytes: int, cost: Callable[[str], int] = line_bytes
) -> int:
    """How many of the first ``lines`` make the next batch: at most ``max_lines`` lines and
    ``max_bytes`` bytes (each line counted as ``cost(line)``), at least one (pure)."""
    size = 0
    count = 0
    for _, _, line in lines:
        size += cost(line)
        if count and (count >= max_lines or size > max_bytes):
            break
        count += 1
    return count


class LossReport:
    """When a stream's losses are reported: the first at once, then at most once every
    ``every_s`` with the count since the last report (so an outage is one alert a minute,
    not one per line)."""

    def __init__(self, every_s: float = 60.0) -> None:
        self._every = every_s
        self._last = float("-inf")
        self._reported = 0

    def due(self, losses: int, now: float) -> int:
        """Lines lost since the last report, when a report is due now; else 0."""
        if losses <= self._reported or now - self._last < self._every:
            return 0
        new, self._reported, self._last = losses - self._reported, losses, now
        return new


class Stream:
    """A bounded, ordered, retried stream of lines; subclasses implement :meth:`_send`."""

    #: what the logs call the receiver ("the HEC endpoint", ...)
    receiver = "the SIEM"

    def __init__(
        self,
        *,
        max_lines: int = 100_000,
        initial_s: float = 0.5,
        max_s: float = 30.0,
        batch_lines: int = 500,
        batch_bytes: int = 1_000_000,
        max_bytes: int = MAX_BUFFER_BYTES,
        name: str = "keyguard-audit-stream",
    ) -> None:
        self._lines: deque[Line] = deque()
        self._bytes = 0  # the lines' characters, held in memory
        self._max_bytes = max_bytes
        self._number = 0
        self._max = max_lines
        self._initial, self._max_s = initial_s, max_s
        self._batch_lines, self._batch_bytes = batch_lines, batch_bytes
        self._cond = threading.Condition()
        self._closing = False
        self._close_by = float("inf")  # the sender gives up retrying then (set by close())
        self.sent = 0
        self.dropped = 0
        self.rejected = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the sender thread (subclasses call it at the end of ``__init__``)."""
        self._thread.start()

    # -- the writer's side (any thread) ------------------------------------------------------

    def write(self, lines: Sequence[str]) -> None:
        now = time.time()
        too_long = 0
        with self._cond:
            for line in lines:
                if self._cost(line) > self._batch_bytes:
                    too_long += 1
                    continue
                while self._lines and (
                    len(self._lines) >= self._max or self._bytes + len(line) > self._max_bytes
                ):
                    self._bytes -= len(self._lines.popleft()[2])
                    self.dropped += 1
                self._number += 1
                self._lines.append((self._number, now, line))
                self._bytes += len(line)
            self.rejected += too_long
            self._cond.notify()
        if too_long:
            log.error(
                "audit: %d lines longer than %s takes (%d bytes) not sent; the store keeps them",
                too_long,
                self.receiver,
                self._batch_bytes,
            )

    def lag(self) -> float:
        """Seconds since the oldest line not yet delivered was handed over (0: none)."""
        with self._cond:
            return time.time() - self._lines[0][1] if self._lines else 0.0

    @property
    def waiting(self) -> int:
        return len(self._lines)

    @property
    def losses(self) -> int:
        """Lines that will never reach the receiver from this process (dropped or refused)."""
        return self.dropped + self.rejected

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what waits (for at most ``timeout_s``), then stop."""
        with self._cond:
            self._closing = True
            self._close_by = time.monotonic() + timeout_s
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s + 0.5)
        if self._lines:
            log.error("audit: %d lines not delivered to %s", len(self._lines), self.receiver)
        self._stopped()

    # -- the sender thread -------------------------------------------------------------------

    def _run(self) -> None:
        delay = self._initial
        while True:
            with self._cond:
                while not self._lines and not self._closing:
                    self._cond.wait()
                if not self._lines:
                    return
                count = take_batch(self._lines, self._batch_lines, self._batch_bytes, self._cost)
                taken = [self._lines[i] for i in range(count)]
            try:
                attempt = self._send([line for _, _, line in taken])
            except Exception as exc:  # a sink's bug must not end the stream silently
                log.error("audit: sending to %s failed: %s", self.receiver, type(exc).__name__)
                attempt = Attempt(False)
            if attempt.ok:
                with self._cond:  # lines dropped meanwhile were the oldest: pop what was sent
                    while self._lines and self._lines[0][0] <= taken[-1][0]:
                        self._bytes -= len(self._lines.popleft()[2])
                    self.sent += len(taken)
                delay = self._initial
                continue
            self.failures += 1
            deadline = time.monotonic() + wait_after(attempt, delay)
            with self._cond:  # back off: new lines do not cut it short; close() bounds it
                while (left := min(deadline, self._close_by) - time.monotonic()) > 0:
                    self._cond.wait(left)
                if time.monotonic() >= self._close_by:
                    return
            delay = min(delay * 2, self._max_s)

    def _cost(self, line: str) -> int:
        """What ``line`` adds to a batch, in bytes (a sink that reshapes lines says so)."""
        return line_bytes(line)

    def _send(self, batch: list[str]) -> Attempt:  # pragma: no cover - every sink has one
        raise NotImplementedError

    def _stopped(self) -> None:
        """Release what the sender held (a connection), after the thread stopped."""
        return None
