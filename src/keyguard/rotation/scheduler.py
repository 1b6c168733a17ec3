"""Rotation inside the gateway: replica reports, triggers, and key-expiry alerts.

:func:`start_gateway_rotation` wires, for one gateway process:

* a :class:`~.replicas.ReplicaReporter` (the key versions this replica serves);
* a :class:`RotationScheduler`, whose one worker runs rotations one at a time from a queue fed
  by three triggers:

  - **schedule**: every ``rotation.check_interval``, each upstream whose stored key is older
    than its ``management.key_max_age``, and every unfinished rotation (a crashed process's,
    resumed once its lease expired);
  - **security events** on ``runtime.events``: a :class:`~keyguard.events.SecurityEvent` of
    kind ``leaked_key``, ``raw_azure_key_presented`` or ``rotate_upstream_requested`` (an
    abuse responder's) naming an ``upstream`` (or carrying the leaked value's vault
    ``fingerprint`` in ``evidence``) rotates that upstream at once;
  - **on demand**: ``keyguard rotate upstream NAME`` (any process; the lease serialises).

  Each check also applies the Keyguard keys' maximum age and raises a ``key_expiring``
  security event (once per key and expiry) for keys expiring within
  ``rotation.key_expiry_warning``.

Failures are logged and retried on the next check; a rotation never blocks a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..errors import GatewayError
from ..events import Event, SecurityEvent
from ..keys.rotation import KeyRotationService
from ..runtime import Runtime
from ..upstream.credentials import VersionedProvider
from ..upstream.pool import UpstreamPool
from .replicas import ReplicaReporter
from .runner import RotationBusy
from .service import RotationService, key_rotation_service
from .store import RotationStore

__all__ = ["RotationScheduler", "GatewayRotation", "start_gateway_rotation", "TRIGGER_KINDS"]

log = logging.getLogger("keyguard.rotation")

#: security events that rotate the upstream they name (the last one is the abuse responders')
TRIGGER_KINDS = frozenset({"leaked_key", "raw_azure_key_presented", "rotate_upstream_requested"})


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RotationScheduler:
    def __init__(
        self,
        service: RotationService,
        keys: KeyRotationService | None,
        runtime: Runtime,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._service = service
        self._keys = keys
        self._events = runtime.events
        self._settings = runtime.settings.rotation
        self._clock = clock
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._pending: set[str] = set()
        self._alerted: set[tuple[str, datetime]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.completed: list[tuple[str, str, str]] = []  # (upstream, trigger, final state)

    async def start(self) -> None:
        if self._settings.on_security_event:
            self._events.subscribe(self._on_event)
        self._tasks = [asyncio.create_task(self._worker()), asyncio.create_task(self._ticker())]

    def request(self, upstream: str, trigger: str) -> None:
        """Queue a rotation of ``upstream`` (coalesced with one already queued)."""
        if upstream not in self._pending:
            self._pending.add(upstream)
            self._queue.put_nowait((upstream, trigger))

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, SecurityEvent) or event.kind not in TRIGGER_KINDS:
            return
        if event.upstream is not None:
            if event.upstream in self._service.rotatable():
                self.request(event.upstream, f"event:{event.kind}")
            return
        fingerprint = event.evidence.get("fingerprint")
        if isinstance(fingerprint, str) and len(fingerprint) == 64:
            self.request(f"fingerprint:{fingerprint}", f"event:{event.kind}")

    async def _ticker(self) -> None:
        while True:
            try:
                await self.check()
            except GatewayError as exc:
                log.warning("rotation check failed: %s", exc)
            await asyncio.sleep(self._settings.check_interval.total_seconds())

    async def check(self) -> None:
        """One scheduler pass (see the module docstring)."""
        now = self._clock()
        for name in self._service.rotatable():
            if await self._service.store.open_rotation(name) is not None:
                self.request(name, "resume")
            elif await self._service.due(name, now):
                self.request(name, "schedule")
        if self._keys is not None:
            await self._keys.enforce_max_age(now=now)
            for item in await self._keys.expiring(self._settings.key_expiry_warning, now=now):
                marker = (item.record.key_id, item.expires_at)
                if marker in self._alerted:
                    continue
                self._alerted.add(marker)
                self._events.emit(
                    SecurityEvent(
                        created=now,
                        kind="key_expiring",
                        severity="low",
                        summary=f"Keyguard key {item.record.key_id} of app {item.record.app} "
                        f"expires at {item.expires_at.isoformat(timespec='seconds')}; rotate it "
                        f"with 'keyguard keys rotate {item.record.key_id}'.",
                        key_id=item.record.key_id,
                        app=item.record.app,
                        evidence={"expires_at": item.expires_at.isoformat()},
                    )
                )

    async def idle(self) -> None:
        """Wait until every queued rotation has been handled."""
        await self._queue.join()

    async def _worker(self) -> None:
        while True:
            upstream, trigger = await self._queue.get()
            self._pending.discard(upstream)
            try:
                await self._run(upstream, trigger)
            finally:
                self._queue.task_done()

    async def _run(self, upstream: str, trigger: str) -> None:
        try:
            if upstream.startswith("fingerprint:"):
                found = await self._service.upstream_by_fingerprint(upstream[12:])
                if found is None:
                    return
                upstream = found
            if trigger == "resume":
                resumed = await self._service.resume(upstream)
                state = "none" if resumed is None else resumed.state
            else:
                state = (await self._service.rotate_upstream(upstream, trigger=trigger)).state
            self.completed.append((upstream, trigger, state))
        except RotationBusy as exc:
            log.info("rotation of %s not started here: %s", upstream, exc)
        except GatewayError as exc:
            log.warning("rotation of %s (%s) did not finish: %s", upstream, trigger, exc)
            self.completed.append((upstream, trigger, "failed"))
        except Exception:
            log.exception("rotation of %s (%s) failed unexpectedly", upstream, trigger)
            self.completed.append((upstream, trigger, "failed"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []


@dataclass
class GatewayRotation:
    """Everything rotation runs inside one gateway process."""

    service: RotationService
    keys: KeyRotationService
    reporter: ReplicaReporter
    scheduler: RotationScheduler | None

    async def close(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.close()
        await self.reporter.close()
        await self.service.close()


def replica_id() -> str:
    return f"{socket.gethostname()[:32]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


async def start_gateway_rotation(runtime: Runtime, pool: UpstreamPool) -> GatewayRotation:
    """Start the reporter and (unless ``rotation.enabled`` is false) the scheduler."""
    settings = runtime.settings
    versioned = {
        up.name: up.provider for up in pool.upstreams if isinstance(up.provider, VersionedProvider)
    }
    service = RotationService(runtime, local_providers={k: [v] for k, v in versioned.items()})
    keys = await key_rotation_service(runtime, accept_delay_s=settings.proxy.key_cache_ttl_s)
    reporter = ReplicaReporter(
        RotationStore.for_store(runtime.store),
        replica_id(),
        versioned,
        interval_s=settings.rotation.credential_refresh_s,
    )
    rotation = GatewayRotation(service, keys, reporter, None)
    try:
        await reporter.start()
        if settings.rotation.enabled:
            rotation.scheduler = RotationScheduler(service, keys, runtime)
            await rotation.scheduler.start()
    except BaseException:
        await rotation.close()
        raise
    return rotation
