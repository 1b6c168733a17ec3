"""Rotation inside the gateway: replica reports, triggers, and key-expiry alerts.

The gateway runs, for one process (:func:`keyguard.wiring.rotation.start_rotation`):

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
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from ..core.tasks import PeriodicTask, cancel_and_wait
from ..errors import GatewayError
from ..events import Event, EventBus, SecurityEvent
from .keys import KeyRotationService
from .runner import RotationBusy
from .service import RotationService
from .settings import RotationSettings

__all__ = ["RotationScheduler", "TRIGGER_KINDS"]

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
        settings: RotationSettings,
        *,
        events: EventBus,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._service = service
        self._keys = keys
        self._events = events
        self._settings = settings
        self._clock = clock
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._pending: set[str] = set()
        self._running: str | None = None  # the upstream the worker is rotating now
        self._runs = 0  # rotations the worker has started, so a check sees one begin mid-read
        self._alerted: set[tuple[str, datetime]] = set()
        self._worker_task: asyncio.Task[None] | None = None
        self._ticker = PeriodicTask(
            "rotation check", self.check, interval=settings.check_interval.total_seconds()
        )
        self.completed: list[tuple[str, str, str]] = []  # (upstream, trigger, final state)

    async def start(self) -> None:
        if self._settings.on_security_event:
            self._events.subscribe(self._on_event)
        self._worker_task = asyncio.create_task(self._worker(), name="keyguard: rotations")
        self._ticker.start()
        self._ticker.wake()  # the first check at once

    def request(self, upstream: str, trigger: str) -> None:
        """Queue a rotation of ``upstream`` (coalesced with one already queued)."""
        if upstream not in self._pending:
            self._pending.add(upstream)
            self._queue.put_nowait((upstream, trigger))

    def would_rotate(self, event: SecurityEvent) -> bool:
        """Whether :meth:`_on_event` rotates an upstream for ``event`` (named, or by the
        vault secret it names; a fingerprint is matched only when the rotation runs)."""
        if not self._settings.on_security_event or event.kind not in TRIGGER_KINDS:
            return False
        return bool(self._named(event)) or isinstance(event.evidence.get("fingerprint"), str)

    def _named(self, event: SecurityEvent) -> list[str]:
        named = [event.upstream] if event.upstream is not None else []
        secret = event.evidence.get("vault_secret")
        if isinstance(secret, str):  # every upstream whose key that vault secret is
            named += self._service.upstreams_using(secret)
        rotatable = self._service.rotatable()
        return [u for u in dict.fromkeys(named) if u in rotatable]

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, SecurityEvent) or event.kind not in TRIGGER_KINDS:
            return
        if event.upstream is not None or "vault_secret" in event.evidence:
            for upstream in self._named(event):
                self.request(upstream, f"event:{event.kind}")
            return
        fingerprint = event.evidence.get("fingerprint")
        if isinstance(fingerprint, str) and len(fingerprint) == 64:
            self.request(f"fingerprint:{fingerprint}", f"event:{event.kind}")

    async def check(self) -> None:
        """One scheduler pass (see the module docstring)."""
        now = self._clock()
        for name in self._service.rotatable():
            if name == self._running:
                continue  # its open rotation is the worker's own, under way
            runs = self._runs
            open_rotation = await self._service.store.open_rotation(name)
            if runs != self._runs or name == self._running or name in self._pending:
                continue  # the worker started a rotation while the store was read: its own
            if open_rotation is not None:
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
            self._running = upstream
            self._runs += 1
            try:
                await self._run(upstream, trigger)
            finally:
                self._running = None
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
        await self._ticker.close()
        await cancel_and_wait(self._worker_task)
        self._worker_task = None
