"""Wiring shared by the CLI and the gateway server: settings -> store, vault, key service.

::

    runtime = await open_runtime(settings, os.environ)
    try:
        record, key = await runtime.keys.create("billing-bot", now=datetime.now(UTC))
    finally:
        await runtime.close()

The master key is loaded before the store is opened, so a missing or unsafe master key fails
without touching the database. A wrong master key fails here too (the pepper cannot be unsealed),
with a :class:`~keyguard.errors.VaultError` that says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from ..bus import Bus
from ..config import Settings
from ..events import EventBus
from ..keys.service import KeyService
from ..store import Store, open_store
from ..vault.master import load_keyring
from ..vault.vault import PEPPER, Vault

__all__ = ["Runtime", "open_runtime", "runtime"]


@dataclass
class Runtime:
    """The long-lived services a Keyguard process works with."""

    settings: Settings
    store: Store
    vault: Vault
    keys: KeyService
    events: EventBus = field(default_factory=EventBus)
    #: where a command's admin changes are announced to the running replicas (the CLI's
    #: publisher on the replica bus; ``None``: they converge by their periodic reloads)
    announce: Bus | None = None

    @property
    def engine(self) -> AsyncEngine | None:
        """The store's SQL engine (every store backend today is SQL), for the parts that keep
        tables of their own (audit, policy, rotation, monitor)."""
        engine = getattr(self.store, "engine", None)
        return engine if isinstance(engine, AsyncEngine) else None

    @property
    def audit_engine(self) -> AsyncEngine | None:
        """The engine audit records go to; ``None`` when the audit is off."""
        return self.engine if self.settings.monitor.audit.enabled else None

    async def close(self) -> None:
        await self.store.close()


async def open_runtime(settings: Settings, environ: Mapping[str, str]) -> Runtime:
    """Load the master key, open (and migrate) the store, and build the services."""
    keyring, key_file = load_keyring(environ, settings.master_key_file)
    store = await open_store(settings.store)
    try:
        vault = await Vault.open(store, keyring, source=key_file)
        pepper = await vault.get_or_create_random(PEPPER)
    except BaseException:
        await store.close()
        raise
    keys = KeyService(store, pepper, vault.fingerprint)
    return Runtime(settings=settings, store=store, vault=vault, keys=keys)


@asynccontextmanager
async def runtime(settings: Settings, environ: Mapping[str, str]) -> AsyncIterator[Runtime]:
    """``async with runtime(settings, os.environ) as rt:`` — opened, then always closed."""
    rt = await open_runtime(settings, environ)
    try:
        yield rt
    finally:
        await rt.close()
