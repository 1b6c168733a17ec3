"""What ``/livez`` and ``/readyz`` answer: the process works; the gateway can serve.

``/livez`` is true while the event loop turns (it answers at all) and the process is not
stopping for good; an orchestrator restarts a process whose liveness fails, so it checks
nothing outside the process. ``/readyz`` is true when the store answers, the limits backend
answers (when one is configured), every deployment has at least one upstream in service (not
all its breakers open), and the process is not draining; the body names every failed check.

The store is probed through a :class:`~keyguard.core.health.CachedCheck` (at most one round
trip a second, bounded to 2 s), and so is each upstream (a TCP connection to its endpoint's
host and port, no request and no credential, at most once every 5 s, bounded to 2 s); an
upstream also counts as out of service while its breakers are open. The limits backend's
check reads its health flag (no I/O). So a flood of probes costs nothing more than answering
them.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from ..core.health import CachedCheck, CheckResult
from ..limits.admission import LimitAdmission
from ..store.base import Store
from ..upstream.pool import UpstreamPool

__all__ = ["Health"]

_PROBE_KEY_ID = "000000000000"  # a key id no key has: the lookup proves the store answers


@dataclass
class Health:
    store: Store
    pool: UpstreamPool | None = None
    admission: LimitAdmission | None = None
    generation: int = 0  # which configuration this process serves (reloads count up)
    draining: bool = False
    _store_check: CachedCheck = field(init=False)
    _upstream_checks: dict[str, CachedCheck] = field(init=False)

    def __post_init__(self) -> None:
        self._store_check = CachedCheck(self._probe_store, ttl_s=1.0, timeout_s=2.0)
        upstreams = self.pool.upstreams if self.pool is not None else []
        self._upstream_checks = {
            up.name: CachedCheck(partial(_reachable, up.endpoint), ttl_s=5.0, timeout_s=2.0)
            for up in upstreams
        }

    async def _probe_store(self) -> CheckResult:
        await self.store.get_key(_PROBE_KEY_ID)
        return CheckResult(True)

    def live(self) -> tuple[bool, dict[str, Any]]:
        return True, {"status": "ok", "pid": os.getpid(), "generation": self.generation}

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, dict[str, Any]] = {}
        store = await self._store_check.result()
        checks["store"] = _check(store.ok, store.reason or "the store does not answer")
        if self.admission is not None:
            healthy = self.admission.backend_healthy
            checks["limits"] = _check(healthy, "the limits backend does not answer")
        if self.pool is not None:
            names = list(self._upstream_checks)
            found = await asyncio.gather(*(c.result() for c in self._upstream_checks.values()))
            down = self.pool.unavailable({n for n, r in zip(names, found, strict=True) if not r.ok})
            checks["upstreams"] = _check(
                not down, "no upstream in service for: " + ", ".join(down[:20])
            )
        checks["draining"] = _check(not self.draining, "the process is stopping")
        ok = all(c["ok"] for c in checks.values())
        body = {
            "status": "ready" if ok else "not ready",
            "checks": checks,
            "pid": os.getpid(),
            "generation": self.generation,
        }
        return ok, body

    async def close(self) -> None:
        for check in [self._store_check, *self._upstream_checks.values()]:
            await check.close()


async def _reachable(endpoint: str) -> CheckResult:
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.open_connection(parts.hostname, port)
    except OSError:
        return CheckResult(False, "unreachable")
    writer.close()
    return CheckResult(True)


def _check(ok: bool, reason: str) -> dict[str, Any]:
    return {"ok": True} if ok else {"ok": False, "reason": reason}
