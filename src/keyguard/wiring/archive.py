"""The audit archive, wired: a destination opened for the CLI, and the gateway's archive task.

:func:`open_archive` opens the folder or container ``target`` names with the credential of
``monitor.audit.archive`` (an account key or a SAS read from the vault; Keyguard's identity
needs no secret). :func:`start_archiver` runs :class:`~keyguard.audit.archiver.Archiver` every
``interval_s`` when ``archive.to`` is set, stopped with the gateway.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AsyncExitStack

from ..audit.archiver import Archiver
from ..audit.destination import Destination, is_url, open_destination
from ..audit.signing import load_signer
from ..config import Settings
from ..core.tasks import PeriodicTask
from ..metrics.registry import GatewayMetrics
from .rotation import replica_id
from .runtime import Runtime, open_runtime

__all__ = ["open_archive", "start_archiver"]


async def open_archive(
    settings: Settings, target: str, environ: Mapping[str, str] = os.environ
) -> Destination:
    """The destination ``target`` names; the vault is opened only when a secret is needed."""
    archive = settings.monitor.audit.archive
    if not is_url(target) or archive.credential == "managed_identity":
        return await open_destination(target, archive)
    rt = await open_runtime(settings, environ)
    try:
        return await open_destination(target, archive, rt.vault.get)
    finally:
        await rt.close()


async def start_archiver(
    stack: AsyncExitStack, runtime: Runtime, metrics: GatewayMetrics | None
) -> Archiver | None:
    """The gateway's archive task, when ``monitor.audit.archive.to`` is set."""
    audit = runtime.settings.monitor.audit
    engine = runtime.engine
    target = audit.archive.to
    if not audit.enabled or target is None or engine is None:
        return None
    vault = runtime.vault

    async def destination() -> Destination:
        return await open_destination(target, audit.archive, vault.get)

    archiver = Archiver(
        engine, await load_signer(vault), audit.archive, destination, owner=replica_id()
    )
    task = PeriodicTask("audit archive", archiver.step, interval=audit.archive.interval_s)
    stack.push_async_callback(task.close)
    task.start()
    archiver.task = task
    if metrics is not None:
        metrics.gauge("keyguard_audit_archive_failures",
                      "Audit archive rounds that failed (see the log for the reason).",
                      lambda: float(archiver.failures))  # fmt: skip
        metrics.gauge("keyguard_audit_archived_records",
                      "Audit records this process moved out of the store to the archive.",
                      lambda: float(archiver.records))  # fmt: skip
        metrics.gauge("keyguard_audit_archive_last_success_timestamp_seconds",
                      "When this process last ran an archive round that succeeded (0: never).",
                      lambda: archiver.last_success)  # fmt: skip
    return archiver
