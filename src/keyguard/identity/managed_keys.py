"""Recognise Keyguard's own upstream keys by fingerprint, without decrypting anything.

The vault stores, next to each sealed version, ``fingerprint = HMAC-SHA256(fingerprint key,
value)`` (:meth:`keyguard.vault.vault.Vault.fingerprint`). This index reads those fingerprints
(never a ciphertext) for every non-internal secret and every version -- an old version may be
the Azure key that is still valid after a rotation -- and answers "is this string one of our
upstream keys?" with one HMAC and one dict lookup. It is refreshed at start and then every
``refresh_interval`` seconds in the background, so the proxy never queries the store for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ..core.tasks import PeriodicTask
from ..errors import GatewayError
from ..store.schema import vault_secrets
from ..store.sql import translate_errors

__all__ = ["ManagedKeyIndex", "ManagedKeyMatch"]

log = logging.getLogger("keyguard.identity")
_INTERNAL = "keyguard/"


@dataclass(frozen=True, slots=True)
class ManagedKeyMatch:
    secret: str  # the vault secret name, e.g. upstream/prod-eastus
    version: int


class ManagedKeyIndex:
    def __init__(
        self,
        engine: AsyncEngine,
        fingerprint: Callable[[str], str],
        *,
        refresh_interval: float = 60.0,
    ) -> None:
        self._engine = engine
        self._fingerprint = fingerprint
        self._interval = refresh_interval
        self._index: dict[str, ManagedKeyMatch] = {}
        self._task: PeriodicTask | None = None

    def __len__(self) -> int:
        return len(self._index)

    def match(self, value: str) -> ManagedKeyMatch | None:
        found = self._index.get(self._fingerprint(value))
        if found is None and value != value.lower():
            found = self._index.get(self._fingerprint(value.lower()))
        return found

    async def refresh(self) -> None:
        query = select(
            vault_secrets.c.name, vault_secrets.c.version, vault_secrets.c.fingerprint
        ).where(~vault_secrets.c.name.startswith(_INTERNAL))
        async with translate_errors("read key fingerprints"), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        self._index = {
            row.fingerprint: ManagedKeyMatch(row.name, row.version)
            for row in rows
            if row.fingerprint
        }

    async def start(self) -> None:
        try:
            await self.refresh()
        except GatewayError as exc:
            log.warning("identity: cannot read upstream key fingerprints yet: %s", exc)
        self._task = PeriodicTask(
            "identity: refreshing upstream key fingerprints", self.refresh, interval=self._interval
        )
        self._task.start()

    async def close(self) -> None:
        if self._task is not None:
            await self._task.close()
            self._task = None
