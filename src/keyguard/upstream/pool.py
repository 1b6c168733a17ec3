"""The upstreams Keyguard forwards to, and which deployment each one serves.

Built once from the configuration. The upstream URL of every request is derived from here
alone (an endpoint from the config plus a validated deployment name): nothing in a request can
choose the host, scheme or port Keyguard connects to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..config import Settings
from ..vault.vault import Vault
from .credentials import CredentialProvider, provider_for

__all__ = ["Upstream", "Target", "UpstreamPool"]


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    endpoint: str  # scheme://host[:port][/prefix], no trailing slash
    provider: CredentialProvider


@dataclass(frozen=True, slots=True)
class Target:
    upstream: Upstream
    deployment: str  # the deployment name at the upstream


class UpstreamPool:
    def __init__(self, upstreams: list[Upstream], targets: dict[str, Target]) -> None:
        self.upstreams = upstreams
        self._targets = targets

    @classmethod
    def from_settings(
        cls, settings: Settings, *, vault: Vault, environ: Mapping[str, str]
    ) -> UpstreamPool:
        upstreams: list[Upstream] = []
        targets: dict[str, Target] = {}
        for cfg in settings.upstreams:
            up = Upstream(
                cfg.name,
                cfg.endpoint,
                provider_for(cfg.credential, vault=vault, environ=environ),
            )
            upstreams.append(up)
            for name, dep in cfg.deployments.items():
                targets[name] = Target(up, dep.upstream_deployment or name)
        return cls(upstreams, targets)

    def resolve(self, deployment: str) -> Target | None:
        return self._targets.get(deployment)

    def deployments(self) -> list[str]:
        return sorted(self._targets)

    async def start(self) -> None:
        for up in self.upstreams:
            await up.provider.start()

    async def close(self) -> None:
        for up in self.upstreams:
            await up.provider.close()
