"""The whole chain's verification, run in the background for the console's Audit page.

It is the walk ``keyguard audit verify`` makes (:func:`.export.verify_store`: every writer's
chain, its signed checkpoints, the head sets, the archive manifests and the configured anchor
file), run as one task off the request path:

* **at most one run at a time** per process: :meth:`BackgroundVerification.start` does nothing
  while one runs;
* **bounded in time**: a run stops after ``timeout_s`` (default 300 s) and says how far it got
  (which writer's chain, which seq, how many records) — ``incomplete``, never ``verified``;
* **bounded in memory**: the walk keeps a constant window of each chain; the result keeps the
  first :data:`KEPT_PROBLEMS` problems, each cut to 300 characters, and counts the rest;
* **cached**: the last result, with when it started and finished, stays until the next run
  ends; a page asks :meth:`BackgroundVerification.start_if_stale` to start one when there is
  none or the last is older than ``stale_after_s`` (default 1 h).

What a result says is :func:`status_of`, a pure function of the walk's report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from ..core.times import utc_seconds
from ..errors import ConfigurationError, GatewayError
from .anchor import read_anchor
from .export import Anchored, Check, Progress, verify_store
from .store import AuditStore
from .verify import VerifyReport

__all__ = [
    "BackgroundVerification",
    "ChainStatus",
    "KEPT_PROBLEMS",
    "reached",
    "status_of",
    "store_walk",
]

log = logging.getLogger("keyguard.audit")

KEPT_PROBLEMS = 5
Verify = Callable[[Progress], Awaitable[VerifyReport]]
State = Literal["verified", "broken", "incomplete"]


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """One run's result: ``verified`` (every chain intact and sealed to its end),
    ``broken`` (``problems``; ``first_bad`` in writer ``first_bad_chain``) or ``incomplete``
    (stopped early or the store failed: ``reason``; nothing is claimed about the rest)."""

    state: State
    started: datetime
    finished: datetime
    records: int
    chains: int
    checkpoints: int
    reached: str  # how far the walk got: "writer X, seq N"
    problems: tuple[str, ...] = ()
    more_problems: int = 0
    first_bad: int | None = None
    first_bad_chain: str = ""
    reason: str = ""
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state,
            "started": utc_seconds(self.started),
            "finished": utc_seconds(self.finished),
            "records": self.records,
            "chains": self.chains,
            "checkpoints": self.checkpoints,
            "reached": self.reached,
            "problems": list(self.problems),
            "more_problems": self.more_problems,
            "first_bad": self.first_bad,
            "first_bad_chain": self.first_bad_chain,
            "reason": self.reason,
            "notes": list(self.notes),
        }


def reached(progress: Progress) -> str:
    if not progress.records:
        return "no record read"
    return f"writer {progress.chain or '(shared)'}, seq {progress.seq}"


def _cut(text: str) -> str:
    return text if len(text) <= 300 else text[:299] + "…"


def status_of(
    report: VerifyReport | None,
    progress: Progress,
    started: datetime,
    finished: datetime,
    reason: str = "",
) -> ChainStatus:
    """What a run found: ``report`` is ``None`` when the run stopped early (``reason``),
    which is ``incomplete`` with how far it got (``progress``)."""
    problems = tuple(_cut(p) for p in (report.problems if report else [])[:KEPT_PROBLEMS])
    more = 0
    if report is not None:
        more = len(report.problems) - len(problems) + report.more_problems
    state: State = "broken" if problems else "incomplete" if reason else "verified"
    return ChainStatus(
        state=state,
        started=started,
        finished=finished,
        records=report.records if report and not reason else progress.records,
        chains=report.chains if report and not reason else progress.chains,
        checkpoints=report.checkpoints if report else 0,
        reached=reached(progress),
        problems=problems,
        more_problems=more,
        first_bad=report.first_bad if report else None,
        first_bad_chain=report.first_bad_chain if report else "",
        reason=reason,
        notes=tuple(_cut(n) for n in (report.notes if report else [])[:KEPT_PROBLEMS]),
    )


def _read_anchors(path: str) -> list[Anchored]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return [(path, line, item) for line, item in read_anchor(fh)]
    except FileNotFoundError:
        return []  # nothing anchored yet (the writer creates it at its first checkpoint)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the anchor file: {exc.strerror}") from None


def store_walk(store: AuditStore, check: Check, anchor_file: str | None = None) -> Verify:
    """The walk ``keyguard audit verify`` makes of the store, with the configured anchor file
    (read in a thread, at each run)."""

    async def walk(progress: Progress) -> VerifyReport:
        anchors = await asyncio.to_thread(_read_anchors, anchor_file) if anchor_file else []
        return await verify_store(store, check, anchors, progress)

    return walk


class BackgroundVerification:
    def __init__(
        self,
        verify: Verify,
        *,
        timeout_s: float = 300.0,
        stale_after_s: float = 3600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_broken: Callable[[ChainStatus], None] | None = None,
    ) -> None:
        if timeout_s <= 0 or stale_after_s <= 0:
            raise ValueError("timeout_s and stale_after_s must be positive")
        self._verify = verify
        self._timeout = timeout_s
        self._stale = timedelta(seconds=stale_after_s)
        self._clock = clock
        self._on_broken = on_broken
        self._task: asyncio.Task[None] | None = None
        self.last: ChainStatus | None = None
        self.progress: Progress | None = None  # the running walk's
        self.running_since: datetime | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> bool:
        """Start a run unless one is running; whether this call started one."""
        if self.running:
            return False
        self.progress = Progress()
        self.running_since = self._clock()
        self._task = asyncio.create_task(self._run(self.progress, self.running_since))
        return True

    def start_if_stale(self) -> bool:
        """Start a run when there is no result yet or the last is older than
        ``stale_after_s``."""
        last = self.last
        if last is not None and self._clock() - last.finished < self._stale:
            return False
        return self.start()

    def to_json(self) -> dict[str, object]:
        """The last result (``null`` when none yet) and the run under way, if any."""
        progress = self.progress if self.running else None
        return {
            "last": None if self.last is None else self.last.to_json(),
            "running": progress is not None,
            "running_since": utc_seconds(self.running_since) if progress else None,
            "progress": None
            if progress is None
            else {
                "records": progress.records,
                "chains": progress.chains,
                "reached": reached(progress),
            },
        }

    async def wait(self) -> ChainStatus | None:
        """The result of the run under way (or the last one)."""
        task = self._task
        if task is not None:
            await asyncio.shield(task)
        return self.last

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self, progress: Progress, started: datetime) -> None:
        report: VerifyReport | None = None
        reason = ""
        try:
            async with asyncio.timeout(self._timeout):
                report = await self._verify(progress)
        except TimeoutError:
            reason = f"stopped after {self._timeout:g} s"
        except ConfigurationError as exc:
            reason = _cut(str(exc))
        except GatewayError as exc:
            reason = f"the store could not be read ({type(exc).__name__})"
            log.error("audit verification: %s", exc)
        status = status_of(report, progress, started, self._clock(), reason)
        self.last = status
        self.running_since = None
        log.info(
            "audit verification: %s (%d records in %d chains)",
            status.state,
            status.records,
            status.chains,
        )
        if status.state == "broken" and self._on_broken is not None:
            self._on_broken(status)
