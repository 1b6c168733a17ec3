"""The gateway's archive step: every ``archive.interval_s``, one replica moves the chains older
than ``archive.older_than`` to ``archive.to`` (:func:`.archive.archive_chains`).

Only the holder of the store lease ``audit:archive`` runs (:mod:`keyguard.store.leases`),
renewing it every third of ``lease_s`` while it works; the others skip the round. Should the
holder stall past its lease (a paused process) and another start, the destination still
keeps them apart: a file is never replaced and a manifest is appended only over the manifests
read (:class:`~.destination.ArchiveConflict` for the later one), and a chain leaves the store
only once a signed manifest for exactly its bytes is in the archive.

A failure is logged once (one warning line, no secret: destination errors are scrubbed), and
again only when the reason changes; its return is logged as it works again. Every failure is
counted (``keyguard_audit_archive_failures``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from ..core.tasks import PeriodicTask
from ..errors import GatewayError
from ..store.leases import acquire_lease, release_lease
from .archive import archive_chains
from .archive_settings import ArchiveSettings
from .destination import Destination
from .signing import Signer
from .store import AuditStore

__all__ = ["Archiver", "LEASE"]

log = logging.getLogger("keyguard.audit")

LEASE = "audit:archive"


class Archiver:
    def __init__(
        self,
        engine: AsyncEngine,
        signer: Signer,
        settings: ArchiveSettings,
        open_destination: Callable[[], Awaitable[Destination]],
        *,
        owner: str,
        clock: Callable[[], float] = time.time,
        logger: logging.Logger = log,
        renew_s: float | None = None,
    ) -> None:
        self._engine = engine
        self._store = AuditStore(engine)
        self._signer = signer
        self._settings = settings
        self._open = open_destination
        self._owner = owner[:64]
        self._clock = clock
        self._log = logger
        self._failing: str | None = None
        self.runs = 0  # rounds this replica held the lease
        self.busy = 0  # rounds skipped: another replica held it
        self.failures = 0
        self.chains = 0  # chains moved out by this replica
        self.records = 0
        self.last_success = 0.0  # time of the last successful round (0: none yet)
        self.task: PeriodicTask | None = None  # the loop running it, once started
        self.renewer: PeriodicTask | None = None  # renews the lease during a round
        self._renew_s = renew_s if renew_s is not None else settings.lease_s / 3
        self.renewals = 0

    @property
    def where(self) -> str:
        return self._settings.to or ""

    async def step(self) -> None:
        """One round; never raises (a failure is logged once and counted)."""
        try:
            ran = await self._round()
        except Exception as exc:
            self.failures += 1
            reason = str(exc) if isinstance(exc, GatewayError) else type(exc).__name__
            if reason != self._failing:
                self._log.warning(
                    "audit archive to %s failed: %s (not logged again until the reason changes "
                    "or it works; counted in keyguard_audit_archive_failures)",
                    self.where,
                    reason,
                )
            self._failing = reason
            return
        if ran:
            if self._failing is not None:
                self._log.info("audit archive to %s works again", self.where)
            self._failing = None
            self.last_success = self._clock()

    async def _round(self) -> bool:
        now = datetime.fromtimestamp(self._clock(), UTC)
        ttl = timedelta(seconds=self._settings.lease_s)
        if not await acquire_lease(self._engine, LEASE, self._owner, now, ttl):
            self.busy += 1
            return False
        self.renewer = PeriodicTask("audit archive lease", self._renew, interval=self._renew_s)
        self.renewer.start()
        try:
            self.runs += 1
            dest = await self._open()
            try:
                before = now - self._settings.older_than
                done = await archive_chains(self._store, self._signer, dest, before, now)
            finally:
                await dest.close()
        finally:
            await self.renewer.close()
            await release_lease(self._engine, LEASE, self._owner)
        self.chains += len(done)
        self.records += sum(m.records for m in done)
        if done:
            self._log.info(
                "audit archive: %d chain(s), %d records moved to %s",
                len(done),
                sum(m.records for m in done),
                self.where,
            )
        return True

    async def _renew(self) -> None:
        """Keep the lease while a long round runs (every third of ``lease_s``)."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        ttl = timedelta(seconds=self._settings.lease_s)
        if await acquire_lease(self._engine, LEASE, self._owner, now, ttl):
            self.renewals += 1
        else:
            self._log.warning(
                "audit archive: another replica took the lease during a round (it had expired); "
                "the archive keeps the two apart"
            )
