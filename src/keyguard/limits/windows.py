"""Fixed windows aligned on the UTC calendar: minute, hour, day, month (pure, ``now`` passed in).

A limit counts in one window at a time; the window of a request is the one containing the
moment it was admitted, and its settlement corrects that same window. Windows are aligned, like
Azure's own per-minute counters: ``12:00:00`` up to (not including) ``12:01:00``; days and
months start at midnight UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

__all__ = ["Period", "window", "WindowCache"]

Period = Literal["minute", "hour", "day", "month"]

_WIDTH = {"minute": 60, "hour": 3600, "day": 86400}


def window(period: Period, now: float) -> tuple[int, int]:
    """``(start, end)`` in epoch seconds of the ``period`` window containing ``now``."""
    width = _WIDTH.get(period)
    if width is not None:
        start = int(now // width) * width
        return start, start + width
    d = datetime.fromtimestamp(now, UTC)
    first = datetime(d.year, d.month, 1, tzinfo=UTC)
    following = datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)
    return int(first.timestamp()), int(following.timestamp())


class WindowCache:
    """The current window of each period, recomputed only when ``now`` leaves it."""

    __slots__ = ("_current",)

    def __init__(self) -> None:
        self._current: dict[str, tuple[int, int]] = {}

    def get(self, period: Period, now: float) -> tuple[int, int]:
        cached = self._current.get(period)
        if cached is not None and cached[0] <= now < cached[1]:
            return cached
        fresh = self._current[period] = window(period, now)
        return fresh
