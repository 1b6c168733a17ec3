"""Background loops: one way to run a step again and again, and to stop it.

Every part that works in the background (key refreshes, policy reloads, replica reports,
counter saves, ...) hands its step to a :class:`PeriodicTask`; a queue consumer is stopped
with :func:`cancel_and_wait`::

    task = PeriodicTask("policy reload", source.refresh, interval=5.0)
    task.start()          # the first step runs after one interval
    ...
    task.wake()           # run the step now (e.g. something changed)
    await task.close()    # cancel, and wait until it has stopped

A step that raises is logged (a :class:`~keyguard.errors.GatewayError` as one warning line, any
other exception with its traceback) and the loop goes on: a background loop never dies of a
failed step. ``interval`` may be a function, read before every wait, for loops whose delay
depends on their state (a token refreshed before it expires, a back-off after failures).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ..errors import GatewayError

__all__ = ["PeriodicTask", "cancel_and_wait"]

log = logging.getLogger("keyguard")


async def cancel_and_wait(*tasks: asyncio.Task[object] | None) -> None:
    """Cancel background tasks (queue consumers and the like) and wait until they stopped.
    A cancellation of the caller itself is not swallowed with theirs."""
    for task in tasks:
        if task is not None:
            task.cancel()
    for task in tasks:
        if task is None:
            continue
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise


class PeriodicTask:
    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[object]],
        *,
        interval: float | Callable[[], float],
        logger: logging.Logger = log,
    ) -> None:
        self.name = name
        self._step = step
        self._interval = interval
        self._log = logger
        self._wake = asyncio.Event()
        self._cycled = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.cycles = 0  # steps run (successful or not)
        self._closing = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"keyguard: {self.name}")

    def wake(self) -> None:
        """Run the step now instead of at the end of the current wait."""
        self._wake.set()

    async def next_cycle(self) -> None:
        """Wait until the loop has run its step once more (for tests and tools)."""
        async with self._cycled:
            await self._cycled.wait()

    async def close(self) -> None:
        self._closing = True  # seen by the loop even if a cancellation were lost in a race
        self._wake.set()
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def _delay(self) -> float:
        interval = self._interval
        return max(0.0, interval() if callable(interval) else interval)

    async def _run(self) -> None:
        while not self._closing:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that lands as the wait completes, and the loop would outlive close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._delay()):
                    await self._wake.wait()
            if self._closing:
                return
            self._wake.clear()
            try:
                await self._step()
            except GatewayError as exc:
                self._log.warning("%s failed: %s", self.name, exc)
            except Exception:
                self._log.exception("%s failed unexpectedly", self.name)
            self.cycles += 1
            async with self._cycled:
                self._cycled.notify_all()
