"""The rotation service: what ``keyguard rotate`` and the gateway's scheduler call.

::

    service = rotation_service(runtime)                   # keyguard.wiring.rotation
    try:
        rotation = await service.rotate_upstream("east")      # manual, or trigger="schedule"
        print(rotation.state)                                 # "done" or "aborted"
    finally:
        await service.close()

An upstream can be rotated when its config has ``management`` (the Azure resource) and its key
is kept by Keyguard (``vault``) or in Azure Key Vault (``key_vault``); with
``managed_identity`` nothing uses the keys, and a rotation regenerates both (a leaked key dies).
A key from an environment variable cannot be rotated (nothing could store the new one).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from ..errors import ConfigurationError, NotFound
from ..events import EventBus
from ..upstream.credentials import VersionedProvider
from ..upstream.settings import ManagementSettings, UpstreamSettings
from ..upstream.tls import trust
from ..vault.vault import Vault
from .azure import ArmKeyManager, KeyManager
from .machine import Rotation, rotation_due
from .runner import FaultHook, RotationRunner, UpstreamTarget
from .settings import RotationSettings
from .sinks import KeySink, KeyVaultSink, LocalVaultSink
from .store import RotationStore
from .verify import DataPlaneVerifier, Verifier

__all__ = ["RotationService"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RotationService:
    def __init__(
        self,
        upstreams: Sequence[UpstreamSettings],
        settings: RotationSettings,
        *,
        store: RotationStore,
        vault: Vault,
        events: EventBus,
        verifier: Verifier | None = None,
        local_providers: Mapping[str, Sequence[VersionedProvider]] | None = None,
        key_managers: Callable[[ManagementSettings], KeyManager] = ArmKeyManager,
        clock: Callable[[], datetime] = _utcnow,
        fault: FaultHook | None = None,
        owner: str | None = None,
    ) -> None:
        self._upstreams = tuple(upstreams)
        self._vault = vault
        self.store = store
        self._own_verifier = verifier is None
        self._verifier = verifier or DataPlaneVerifier(
            trust={u.endpoint: trust(u.ca_file) for u in upstreams}
        )
        self._key_managers = key_managers
        self._targets: dict[str, UpstreamTarget] = {}
        self._clock = clock
        self.runner = RotationRunner(
            self.store,
            vault.fingerprint,
            settings,
            events=events,
            verifier=self._verifier,
            owner=owner,
            clock=clock,
            local_providers=local_providers,
            fault=fault,
        )

    def upstream(self, name: str) -> UpstreamSettings:
        for cfg in self._upstreams:
            if cfg.name == name:
                return cfg
        known = ", ".join(c.name for c in self._upstreams) or "none"
        raise NotFound(f"no upstream named {name!r} (configured: {known})", reason="no_upstream")

    def rotatable(self) -> list[str]:
        """Upstreams with ``management`` settings and a key Keyguard can replace."""
        return [
            c.name
            for c in self._upstreams
            if c.management is not None and c.credential.kind != "env"
        ]

    def upstreams_using(self, vault_secret: str) -> list[str]:
        """The upstreams whose key is the local vault secret ``vault_secret``."""
        return [c.name for c in self._upstreams if c.credential.vault == vault_secret]

    def target(self, name: str) -> UpstreamTarget:
        found = self._targets.get(name)
        if found is not None:
            return found
        cfg = self.upstream(name)
        if cfg.management is None:
            raise ConfigurationError(
                f"upstream {name}: add 'management' (subscription_id, resource_group, "
                "account_name) to its config so Keyguard can rotate its keys"
            )
        ref = cfg.credential
        sink: KeySink | None
        if ref.vault is not None:
            sink = LocalVaultSink(self._vault, ref.vault)
        elif ref.key_vault is not None:
            sink = KeyVaultSink(ref.key_vault)
        elif ref.managed_identity is not None:
            sink = None
        else:
            raise ConfigurationError(
                f"upstream {name}: its key comes from an environment variable, where Keyguard "
                "cannot store a new one; move it to the vault or Key Vault first"
            )
        found = UpstreamTarget(name, cfg.endpoint, self._key_managers(cfg.management), sink)
        self._targets[name] = found
        return found

    async def rotate_upstream(self, name: str, *, trigger: str = "manual") -> Rotation:
        """Run or resume the rotation of ``name``; see :class:`RotationRunner`."""
        rotation = await self.runner.rotate(self.target(name), trigger)
        assert rotation is not None
        return rotation

    async def resume(self, name: str) -> Rotation | None:
        """Finish ``name``'s unfinished rotation, if it has one (never starts a new one)."""
        return await self.runner.rotate(self.target(name), "resume", resume_only=True)

    async def status(self, name: str | None = None, limit: int = 20) -> list[Rotation]:
        if name is not None:
            self.upstream(name)
        return await self.store.rotations(name, limit)

    async def key_created_at(self, name: str) -> datetime | None:
        """When the key in service for ``name`` was stored (None: no stored key)."""
        sink = self.target(name).sink
        stored = None if sink is None else await sink.latest()
        return None if stored is None else stored.created_at

    async def due(self, name: str, now: datetime) -> bool:
        """Whether ``name``'s key is older than its ``key_max_age``. Without a stored key
        (managed identity) the age is that of the last rotation, and keys never rotated by
        Keyguard are due (nothing uses them; regenerating them kills unknown copies)."""
        management = self.upstream(name).management
        if management is None or management.key_max_age is None:
            return False
        if self.target(name).sink is not None:
            created = await self.key_created_at(name)
        else:
            done = [r for r in await self.store.rotations(name, 50) if r.state == "done"]
            if not done:
                return True
            created = done[0].finished_at
        return rotation_due(created, management.key_max_age, now)

    async def upstream_by_fingerprint(self, fingerprint: str) -> str | None:
        """The upstream whose stored key has this vault fingerprint (a leaked key), if any."""
        for name in self.rotatable():
            sink = self.target(name).sink
            stored = None if sink is None else await sink.latest()
            if stored is not None and hmac.compare_digest(
                self._vault.fingerprint(stored.value), fingerprint
            ):
                return name
        return None

    async def close(self) -> None:
        for target in self._targets.values():
            await target.keys.close()
            if target.sink is not None:
                await target.sink.close()
        self._targets.clear()
        if self._own_verifier and isinstance(self._verifier, DataPlaneVerifier):
            await self._verifier.close()
