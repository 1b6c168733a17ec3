"""Carry an upstream key rotation out, one persisted step at a time (see :mod:`.machine`).

:meth:`RotationRunner.rotate` takes the upstream's lease (only one rotation per upstream runs
across all replicas and CLIs), resumes the unfinished rotation if there is one or starts a new
one, and runs steps until it is done. After each step's effect the new state is written with a
compare-and-set; a process killed anywhere resumes where the store says, and every step checks
Azure's and the vault's actual state first, so nothing is regenerated or stored twice.

Outcomes:

* ``done``: the new key serves everywhere and the old one was regenerated (an
  :class:`~keyguard.events.AdminAction` ``upstream.rotate``);
* ``aborted`` (returned): the new key failed verification, or the resource's keys are not
  what Keyguard expects; the old key stays in service and a high-severity
  :class:`~keyguard.events.SecurityEvent` ``rotation_aborted`` is emitted;
* :class:`RotationStalled` (raised): some live replica did not switch within
  ``switch_timeout``; nothing was regenerated, the rotation resumes on the next run;
* :class:`RotationBusy` (raised): another process holds the lease.

A failing Azure or store call raises; the rotation stays where it was and resumes later.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..errors import GatewayError
from ..events import AdminAction, EventBus, SecurityEvent
from ..upstream.credentials import VersionedProvider
from .azure import KeyManager
from .machine import Action, Mode, Rotation, Slot, abort, advance, drain_remaining, next_action
from .replicas import replica_ttl, switch_status
from .settings import RotationSettings
from .sinks import KeySink
from .store import RotationStore
from .verify import CannotVerify, Verifier

__all__ = ["RotationRunner", "UpstreamTarget", "RotationBusy", "RotationStalled", "FaultHook"]

log = logging.getLogger("keyguard.rotation")

#: called with ("effect", action) after a step's effect and ("persisted", action) after its
#: state was written: the seam where tests inject a crash at every step
FaultHook = Callable[[str, Action], Awaitable[None]]


class RotationBusy(GatewayError):
    """Another replica or command is rotating this upstream (it holds the lease)."""


class RotationStalled(GatewayError):
    """Some live replica did not switch to the new key in time; the old key stays valid."""


class _Abort(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """What a rotation of one upstream works on."""

    name: str
    endpoint: str
    keys: KeyManager
    sink: KeySink | None  # None: nothing stores the key (managed identity): burn both keys

    @property
    def mode(self) -> Mode:
        return "flip" if self.sink is not None else "burn"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _slot(pair: tuple[str, str], slot: Slot | None) -> str:
    assert slot is not None
    return pair[0] if slot == "key1" else pair[1]


class RotationRunner:
    def __init__(
        self,
        store: RotationStore,
        fingerprint: Callable[[str], str],
        settings: RotationSettings,
        *,
        events: EventBus,
        verifier: Verifier,
        owner: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        local_providers: Mapping[str, Sequence[VersionedProvider]] | None = None,
        fault: FaultHook | None = None,
        poll_s: float | None = None,
    ) -> None:
        self._store = store
        self._fp = fingerprint
        self._settings = settings
        self._events = events
        self._verify = verifier
        self.owner = owner or f"rotation-{uuid.uuid4().hex[:12]}"
        self._clock = clock
        self._sleep = sleep
        self._local = local_providers or {}
        self._fault = fault
        self._poll_s = poll_s if poll_s is not None else min(1.0, settings.credential_refresh_s)

    # -- the loop -------------------------------------------------------------------------

    async def rotate(
        self, target: UpstreamTarget, trigger: str = "manual", *, resume_only: bool = False
    ) -> Rotation | None:
        """Run (or resume) the rotation of ``target`` to its end; see the module docstring.
        With ``resume_only``, only an unfinished rotation is run (``None`` if there is none)."""
        lease = f"rotation:{target.name}"
        ttl = self._settings.lease
        if not await self._store.acquire_lease(lease, self.owner, self._clock(), ttl):
            raise RotationBusy(f"upstream {target.name} is being rotated by another process")
        lost = asyncio.Event()
        renewer = asyncio.create_task(self._renew(lease, ttl, lost))
        try:
            rotation = await self._store.open_rotation(target.name)
            if rotation is None and resume_only:
                return None
            if rotation is None:
                rotation = self._new(target, trigger)
                await self._store.create_rotation(rotation)
                log.info(
                    "rotation %s of upstream %s started (%s)", rotation.id, target.name, trigger
                )
            else:
                log.info(
                    "rotation %s of %s resumed at %s", rotation.id, target.name, rotation.state
                )
            while (action := next_action(rotation)) is not None:
                if lost.is_set():
                    raise RotationBusy(f"lost the rotation lease of upstream {target.name}")
                rotation = await self._step(target, rotation, action)
            return rotation
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            with contextlib.suppress(GatewayError):
                await self._store.release_lease(lease, self.owner)

    async def _renew(self, lease: str, ttl: timedelta, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(ttl.total_seconds() / 3)
            try:
                if not await self._store.acquire_lease(lease, self.owner, self._clock(), ttl):
                    lost.set()
                    return
            except GatewayError as exc:
                log.warning("could not renew the rotation lease %s: %s", lease, exc)

    def _new(self, target: UpstreamTarget, trigger: str) -> Rotation:
        now = self._clock()
        return Rotation(
            id=str(uuid.uuid4()),
            upstream=target.name,
            mode=target.mode,
            state="planned",
            trigger=trigger[:128],
            created_at=now,
            updated_at=now,
        )

    async def _step(self, target: UpstreamTarget, rotation: Rotation, action: Action) -> Rotation:
        steps: dict[Action, Callable[[UpstreamTarget, Rotation], Awaitable[dict[str, object]]]]
        steps = {
            "inspect": self._inspect,
            "regenerate_standby": self._regenerate_standby,
            "verify": self._verify_step,
            "store": self._store_step,
            "switch": self._switch,
            "drain": self._drain,
            "retire": self._retire,
            "finish": self._finish,
        }
        try:
            changes = await steps[action](target, rotation)
        except _Abort as exc:
            return await self._aborted(target, rotation, action, exc.reason)
        await self._inject("effect", action)
        now = max(self._clock(), rotation.updated_at + timedelta(microseconds=1))
        updated = advance(rotation, action, now, **changes)
        if not await self._store.update_rotation(updated, expected_updated_at=rotation.updated_at):
            raise RotationBusy(f"rotation {rotation.id} was changed by another process")
        log.info("rotation %s of %s: %s -> %s", rotation.id, target.name, action, updated.state)
        if updated.state == "done":
            self._events.emit(
                AdminAction(
                    created=now,
                    actor=f"system:{rotation.trigger}",
                    action="upstream.rotate",
                    target=f"upstream:{target.name}",
                    before={"slot": rotation.active_slot},
                    after={"slot": rotation.standby_slot, "version": rotation.new_version},
                )
            )
        await self._inject("persisted", action)
        return updated

    async def _inject(self, point: str, action: Action) -> None:
        if self._fault is not None:
            await self._fault(point, action)

    async def _aborted(
        self, target: UpstreamTarget, rotation: Rotation, action: Action, reason: str
    ) -> Rotation:
        now = max(self._clock(), rotation.updated_at + timedelta(microseconds=1))
        stopped = abort(rotation, now, f"{action}: {reason}")
        if not await self._store.update_rotation(stopped, expected_updated_at=rotation.updated_at):
            raise RotationBusy(f"rotation {rotation.id} was changed by another process")
        log.error("rotation %s of %s aborted at %s: %s", rotation.id, target.name, action, reason)
        self._events.emit(
            SecurityEvent(
                created=now,
                kind="rotation_aborted",
                severity="high",
                summary=f"Rotation of upstream {target.name} aborted; the old key stays in "
                f"service. {reason}",
                upstream=target.name,
                evidence={"rotation": rotation.id, "step": action, "trigger": rotation.trigger},
            )
        )
        return stopped

    # -- the steps: each returns the changes to record ------------------------------------

    async def _inspect(self, target: UpstreamTarget, r: Rotation) -> dict[str, object]:
        pair = await target.keys.list_keys()
        active: Slot = "key1"
        if target.sink is not None:
            stored = await target.sink.latest()
            if stored is None:
                raise _Abort(f"no key is stored in {target.sink.label}")
            if hmac.compare_digest(stored.value.encode(), pair[0].encode()):
                active = "key1"
            elif hmac.compare_digest(stored.value.encode(), pair[1].encode()):
                active = "key2"
            else:
                raise _Abort(
                    f"the key in {target.sink.label} is neither key1 nor key2 of the resource"
                )
        standby: Slot = "key2" if active == "key1" else "key1"
        return {
            "active_slot": active,
            "standby_slot": standby,
            "active_fp": self._fp(_slot(pair, active)),
            "standby_fp": self._fp(_slot(pair, standby)),
        }

    async def _regenerate_standby(self, target: UpstreamTarget, r: Rotation) -> dict[str, object]:
        pair = await target.keys.list_keys()
        if self._fp(_slot(pair, r.standby_slot)) == r.standby_fp:
            assert r.standby_slot is not None
            pair = await target.keys.regenerate(r.standby_slot)
        new_fp = self._fp(_slot(pair, r.standby_slot))
        if new_fp == r.standby_fp:
            raise _Abort(f"regenerating {r.standby_slot} did not change it")
        return {"new_fp": new_fp}

    async def _new_key(self, target: UpstreamTarget, r: Rotation) -> str:
        value = _slot(await target.keys.list_keys(), r.standby_slot)
        if self._fp(value) != r.new_fp:
            raise _Abort(f"{r.standby_slot} was regenerated outside this rotation")
        return value

    async def _verify_step(self, target: UpstreamTarget, r: Rotation) -> dict[str, object]:
        value = await self._new_key(target, r)
        reason: str | None = None
        for attempt in range(self._settings.verify_attempts):
            if attempt:
                await self._sleep(self._settings.verify_backoff.total_seconds() * attempt)
            try:
                reason = await self._verify(target.endpoint, value)
            except CannotVerify as exc:
                raise _Abort(f"the new {r.standby_slot} could not be checked: {exc}") from None
            if reason is None:
                return {}
            log.warning("rotation %s: the new key was refused (%s)", r.id, reason)
        raise _Abort(f"the new {r.standby_slot} failed verification ({reason})")

    async def _store_step(self, target: UpstreamTarget, r: Rotation) -> dict[str, object]:
        assert target.sink is not None
        value = await self._new_key(target, r)
        latest = await target.sink.latest()
        if latest is not None and self._fp(latest.value) == r.new_fp:
            return {"new_version": latest.version}  # stored before a crash
        return {"new_version": await target.sink.put(value)}

    async def _switch(self, target: UpstreamTarget, r: Rotation) -> dict[str, object]:
        assert r.new_version is not None
        for provider in self._local.get(target.name, ()):
            await provider.refresh()
        start = self._clock()
        ttl = replica_ttl(self._settings.credential_refresh_s)
        while True:
            now = self._clock()
            status = switch_status(await self._store.acks(target.name), r.new_version, now, ttl)
            if status.done:
                return {"switched_at": max(status.last_switch or now, now)}
            if now - start >= self._settings.switch_timeout:
                self._events.emit(
                    SecurityEvent(
                        created=now,
                        kind="rotation_stalled",
                        severity="medium",
                        summary=f"Rotation of upstream {target.name} is waiting for replicas "
                        f"{', '.join(status.waiting)} to serve the new key; the old key stays "
                        "valid until they do.",
                        upstream=target.name,
                        evidence={"rotation": r.id, "waiting": list(status.waiting)},
                    )
                )
                raise RotationStalled(
                    f"upstream {target.name}: replicas {', '.join(status.waiting)} did not "
                    f"switch to the new key within {self._settings.switch_timeout}; the old key "
                    "is still valid. Run the rotation again to resume."
                )
            await self._sleep(self._poll_s)

    async def _drain(self, target: UpstreamTarget, r: Rotation) -> dict[str, object]:
        remaining = drain_remaining(r, self._settings.drain, self._clock())
        if remaining > timedelta(0):
            await self._sleep(remaining.total_seconds())
        return {}

    async def _retire(self, target: UpstreamTarget, r: Rotation) -> dict[str, object]:
        pair = await target.keys.list_keys()
        if self._fp(_slot(pair, r.active_slot)) == r.active_fp:
            assert r.active_slot is not None
            await target.keys.regenerate(r.active_slot)
        return {}

    async def _finish(self, target: UpstreamTarget, r: Rotation) -> dict[str, object]:
        return {}
