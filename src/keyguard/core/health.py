"""Health checks that stay cheap under a probe flood.

A :class:`CachedCheck` runs its probe (a store round trip, say) at most once per ``ttl_s``,
however many callers ask: callers within the cache's life get the last answer, callers that
arrive while a probe runs wait for that one probe (single flight), and a probe that takes
longer than ``timeout_s`` counts as a failure. So a thousand ``/readyz`` a second cost one
store query a second, and a hung store makes readiness false within ``timeout_s`` instead of
stalling the probes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["CachedCheck", "CheckResult"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    reason: str = ""  # why not, in a few words (never an error's text: it may hold a URL)


class CachedCheck:
    def __init__(
        self,
        probe: Callable[[], Awaitable[CheckResult]],
        *,
        ttl_s: float = 1.0,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._ttl = ttl_s
        self._timeout = timeout_s
        self._clock = clock
        self._last: CheckResult | None = None
        self._at = -float("inf")
        self._running: asyncio.Task[CheckResult] | None = None

    async def result(self) -> CheckResult:
        if self._last is not None and self._clock() - self._at < self._ttl:
            return self._last
        if self._running is None:
            self._running = asyncio.ensure_future(self._run())
        # shield: a caller that gives up (a closed probe connection) does not cancel the probe
        # the others wait for
        return await asyncio.shield(self._running)

    async def _run(self) -> CheckResult:
        try:
            async with asyncio.timeout(self._timeout):
                found = await self._probe()
        except TimeoutError:
            found = CheckResult(False, f"no answer within {self._timeout:g} s")
        except Exception as exc:  # a probe's failure is an answer, never a 500
            found = CheckResult(False, type(exc).__name__)
        finally:
            self._running = None
        self._last, self._at = found, self._clock()
        return found

    async def close(self) -> None:
        task = self._running
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
