"""The monitor's backlog: the observations waiting for metrics and detection, bounded.

A request's audit record never waits here: it is queued to the audit writer as the request is
recorded (:meth:`Monitor.record <keyguard.monitor.pipeline.Monitor.record>`), so the writer's
``flush_interval_s`` bounds what a crash loses whatever the detectors cost. What waits here is
the work on the side: metrics and detection.

Under load the backlog must neither grow without bound (findings that arrive minutes late
protect nothing) nor be shed quietly (a flood would blind detection). So:

* :meth:`Backlog.step` says how many observations the monitor handles between two yields to
  the event loop: a few (16) while it keeps up; once the oldest waiting one is older than
  ``CATCH_UP_S``, many (256) more than arrived since the previous step. The monitor then
  takes the CPU it needs before the proxy reads more requests (they wait in the sockets): the
  gateway serves no more than it can watch. A fixed step would not do: a flood at high
  concurrency finishes more than 256 requests while the monitor yields once, and the backlog
  would grow to its cap however the monitor kept up otherwise;
* beyond ``cap`` observations (a bound that catching up keeps it far from), an observation is
  not kept: its request is on record but not seen by the detectors. Each one is counted
  (``keyguard_monitor_dropped``), and reported as a ``monitor_overloaded`` security event, at
  once, then at most once a minute with the count since the last report.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from ..core.observation import Observation
from ..events import SecurityEvent

__all__ = ["Backlog", "CATCH_UP_S", "STEP", "CATCH_UP_STEP"]

log = logging.getLogger("keyguard.monitor")

STEP = 16  # observations between two yields while the monitor keeps up (proxy tail latency)
CATCH_UP_STEP = 256  # ... while it is behind: it takes the CPU before more requests come in
CATCH_UP_S = 0.25  # behind: the oldest observation waiting is older than this
_REPORT_EVERY_S = 60.0


class Backlog:
    def __init__(self, cap: int, *, alert: Callable[[SecurityEvent], None] | None = None) -> None:
        self.items: deque[Observation] = deque()
        self._cap = cap
        self._alert = alert
        self.dropped = 0  # observations not kept (the backlog was full)
        self._reported = 0  # of those, reported so far
        self._reported_at = float("-inf")
        self._arrived = 0  # kept since the last step

    def __len__(self) -> int:
        return len(self.items)

    @property
    def full(self) -> bool:
        return len(self.items) >= self._cap

    def put(self, obs: Observation) -> bool:
        """Keep ``obs`` for metrics and detection; ``False`` (counted, reported) when full."""
        if len(self.items) < self._cap:
            self.items.append(obs)
            self._arrived += 1
            return True
        self.dropped += 1
        self.report(obs.at)
        return False

    def lag(self, now: float) -> float:
        """Seconds the oldest observation has waited (0 when none waits)."""
        items = self.items
        return max(0.0, now - items[0].at) if items else 0.0

    def step(self, now: float) -> int:
        """Observations to handle before the next yield to the event loop (behind: what
        arrived since the previous step, and ``CATCH_UP_STEP`` more)."""
        arrived, self._arrived = self._arrived, 0
        return CATCH_UP_STEP + arrived if self.lag(now) > CATCH_UP_S else STEP

    def report(self, now: float) -> None:
        """Raise what was dropped since the last report (the first at once, then at most once
        every minute)."""
        unreported = self.dropped - self._reported
        if unreported <= 0 or now - self._reported_at < _REPORT_EVERY_S:
            return
        self._reported, self._reported_at = self.dropped, now
        summary = (
            f"The monitor is overloaded: {unreported} requests were not seen by the detectors "
            f"or the metrics ({len(self.items)} waiting, at most {self._cap}); their audit "
            "records were kept. Add workers or replicas, or find what floods this one."
        )
        log.error("monitor: %s", summary)
        if self._alert is not None:
            self._alert(
                SecurityEvent(
                    datetime.fromtimestamp(now, UTC),
                    "monitor_overloaded",
                    "high",
                    summary,
                    evidence={"dropped": unreported, "total": self.dropped, "cap": self._cap},
                )
            )
