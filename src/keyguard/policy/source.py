"""Where the policy in force comes from: the YAML file, the managed document, or both merged.

* ``access.policy.file``: roles and bindings reviewed in git. The file **wins**: a managed
  entry whose name the file also defines is ignored (and reported).
* ``access.policy.managed: true``: the admin API (and ``keyguard policy apply``) may add
  apps, agents, roles and bindings; they are kept in the store (:mod:`.store`) and merged with
  the file. Writes whose names collide with the file are refused up front.
* neither: no policy. The proxy then keeps its default (every valid Keyguard key may use every
  configured deployment) and logs a warning at startup.

:class:`PolicySource` loads both at startup (an invalid file stops the gateway: fail closed),
then re-checks them every ``reload_interval_s`` in the background: a changed file (mtime or
size) or a new managed revision is compiled and swapped in atomically; an invalid new version
is logged and the previous policy stays in force. The hot path only reads :attr:`current`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

from ..core.tasks import PeriodicTask
from ..errors import GatewayError
from .compiled import EMPTY, Policy, compile_policy
from .document import PolicyDocument, load_document, merge, parse_document
from .settings import PolicySettings
from .store import PolicyStore

__all__ = ["PolicySource", "Snapshot"]

log = logging.getLogger("keyguard.policy")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The documents behind the policy in force."""

    file: PolicyDocument
    managed: PolicyDocument
    managed_version: int
    shadowed: tuple[str, ...]


class PolicySource:
    def __init__(self, settings: PolicySettings, store: PolicyStore | None) -> None:
        self._settings = settings
        self._store = store if settings.managed else None
        self._current: Policy = EMPTY
        self._snapshot = Snapshot(PolicyDocument(), PolicyDocument(), 0, ())
        self._file_stamp: tuple[int, int] | None = None
        self.generation = 0
        self._task: PeriodicTask | None = None
        self._lock = asyncio.Lock()
        self._cycled = asyncio.Condition()

    @property
    def configured(self) -> bool:
        return self._settings.configured

    @property
    def current(self) -> Policy:
        return self._current

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def store(self) -> PolicyStore | None:
        return self._store

    async def load(self) -> None:
        """The first load: any error propagates (the gateway does not start on a bad policy)."""
        await self.refresh(force=True)
        for note in self._snapshot.shadowed:
            log.warning("policy: %s", note)

    async def refresh(self, *, force: bool = False) -> bool:
        """Reload what changed; ``True`` when a new policy is in force."""
        async with self._lock:
            file_doc, stamp = self._snapshot.file, self._file_stamp
            path = self._settings.file
            if path is not None:
                new_stamp = _stamp(path)
                if force or new_stamp != stamp:
                    file_doc, stamp = load_document(path), new_stamp
            managed, version = self._snapshot.managed, self._snapshot.managed_version
            if self._store is not None:
                latest = await self._store.latest_version()
                if force or latest != version:
                    revision = await self._store.latest()
                    if revision is None:
                        managed, version = PolicyDocument(), 0
                    else:
                        managed = parse_document(revision.document, f"managed v{revision.version}")
                        version = revision.version
            if (
                not force
                and stamp == self._file_stamp
                and version == self._snapshot.managed_version
            ):
                return False
            merged, shadowed = merge(file_doc, managed)
            policy = compile_policy(merged)
            self._snapshot = Snapshot(file_doc, managed, version, tuple(shadowed))
            self._file_stamp = stamp
            self._current = policy
            self.generation += 1
            return True

    def start(self) -> None:
        if self._task is None and (self._settings.file is not None or self._store is not None):
            self._task = PeriodicTask(
                "policy reload", self._reload, interval=self._settings.reload_interval_s
            )
            self._task.start()

    async def close(self) -> None:
        if self._task is not None:
            await self._task.close()
            self._task = None

    def wake(self) -> None:
        """Re-check the file and the store now (another replica changed the policy)."""
        if self._task is not None:
            self._task.wake()

    async def next_cycle(self) -> None:
        """Wait until the background reload has run once more (for tests and tools)."""
        assert self._task is not None, "the policy source is not started"
        await self._task.next_cycle()

    async def _reload(self) -> None:
        try:
            if await self.refresh():
                log.info("policy: reloaded (generation %d)", self.generation)
        except GatewayError as exc:
            log.error("policy: keeping the policy in force; the new one is invalid: %s", exc)
        except Exception:
            log.exception("policy: reload failed; keeping the policy in force")


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
