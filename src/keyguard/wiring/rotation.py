"""Rotation, wired from the runtime: the services the CLI and the gateway use, and the parts
that run inside a gateway process (replica reports, the scheduler)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from typing import Any

from ..errors import ConfigurationError
from ..rotation.keys import ROTATION_KEY, KeyRotationService, RotationResult
from ..rotation.machine import Rotation
from ..rotation.replicas import ReplicaReporter
from ..rotation.scheduler import RotationScheduler
from ..rotation.service import RotationService
from ..rotation.store import RotationStore
from ..upstream.credentials import VersionedProvider
from ..upstream.pool import UpstreamPool
from .runtime import Runtime

__all__ = [
    "GatewayRotation",
    "key_rotation_service",
    "replica_id",
    "rotate_leaked_key",
    "rotate_upstream_for_secret",
    "rotation_service",
    "rotation_store",
    "start_rotation",
]


def rotation_store(runtime: Runtime) -> RotationStore:
    engine = runtime.engine
    if engine is None:  # pragma: no cover - every store backend is SQL today
        raise ConfigurationError("rotation needs the SQL store (sqlite:/// or postgresql://)")
    return RotationStore(engine)


def rotation_service(
    runtime: Runtime,
    *,
    local_providers: Mapping[str, Sequence[VersionedProvider]] | None = None,
    **options: Any,
) -> RotationService:
    """Upstream key rotation over ``runtime`` (``options``: the service's test seams)."""
    return RotationService(
        runtime.settings.upstreams,
        runtime.settings.rotation,
        store=rotation_store(runtime),
        vault=runtime.vault,
        events=runtime.events,
        local_providers=local_providers,
        **options,
    )


async def key_rotation_service(runtime: Runtime, *, accept_delay_s: float) -> KeyRotationService:
    """Keyguard key rotation over ``runtime`` (creates the rotation key on first use)."""
    return KeyRotationService(
        runtime.keys,
        runtime.store,
        rotation_store(runtime),
        await runtime.vault.get_or_create_random(ROTATION_KEY),
        max_age=runtime.settings.rotation.key_max_age,
        events=runtime.events,
        accept_delay_s=accept_delay_s,
    )


async def rotate_leaked_key(rt: Runtime, key_id: str, *, now: datetime) -> RotationResult:
    """A leaked key's secret replaced with no grace period: the leaked value stops working on
    every replica within ``key_cache_ttl_s``, the key id (and its limits) carries on. The new
    secret is returned once; whoever called must hand it to the app's owner."""
    service = await key_rotation_service(rt, accept_delay_s=rt.settings.proxy.key_cache_ttl_s)
    return await service.rotate(key_id, now=now, grace=timedelta(0), actor="system:leaked_key")


async def rotate_upstream_for_secret(
    runtime: Runtime, secret_name: str, *, reason: str, now: datetime | None = None
) -> list[Rotation]:
    """Rotate every upstream whose key is the local vault secret ``secret_name`` (a leak found
    by the scanner); :class:`ConfigurationError` when none can be rotated."""
    names = [
        c.name
        for c in runtime.settings.upstreams
        if c.credential.vault == secret_name and c.management is not None
    ]
    if not names:
        raise ConfigurationError(
            f"no upstream with 'management' settings uses the vault secret {secret_name}; "
            "rotate the key in Azure and store the new one with 'keyguard vault put'"
        )
    service = rotation_service(runtime)
    try:
        return [await service.rotate_upstream(n, trigger=f"event:{reason}") for n in names]
    finally:
        await service.close()


def replica_id() -> str:
    return f"{socket.gethostname()[:32]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class GatewayRotation:
    """Everything rotation runs inside one gateway process."""

    def __init__(
        self,
        service: RotationService,
        keys: KeyRotationService,
        reporter: ReplicaReporter,
        scheduler: RotationScheduler | None,
    ) -> None:
        self.service = service
        self.keys = keys
        self.reporter = reporter
        self.scheduler = scheduler


async def start_rotation(
    stack: AsyncExitStack,
    runtime: Runtime,
    pool: UpstreamPool,
    *,
    replica: Callable[[], str] = replica_id,
) -> GatewayRotation:
    """Start the replica reporter and (unless ``rotation.enabled`` is false) the scheduler;
    ``stack`` stops them."""
    settings = runtime.settings
    versioned = {
        up.name: up.provider for up in pool.upstreams if isinstance(up.provider, VersionedProvider)
    }
    service = rotation_service(runtime, local_providers={k: [v] for k, v in versioned.items()})
    stack.push_async_callback(service.close)
    keys = await key_rotation_service(runtime, accept_delay_s=settings.proxy.key_cache_ttl_s)
    reporter = ReplicaReporter(
        rotation_store(runtime),
        replica(),
        versioned,
        interval_s=settings.rotation.credential_refresh_s,
    )
    await reporter.start()
    stack.push_async_callback(reporter.close)
    scheduler = None
    if settings.rotation.enabled:
        scheduler = RotationScheduler(service, keys, settings.rotation, events=runtime.events)
        await scheduler.start()
        stack.push_async_callback(scheduler.close)
    return GatewayRotation(service, keys, reporter, scheduler)
