"""The upstreams Keyguard forwards to, and which backends serve each deployment.

Built once from the configuration. The upstream URL of every request is derived from here
alone (an endpoint from the config plus a validated deployment name): nothing in a request can
choose the host, scheme or port Keyguard connects to.

A deployment may be served by several backends (an upstream, i.e. a region or resource, plus
the deployment's name there). :meth:`UpstreamPool.plan` orders them for one request: lowest
``priority`` first, a weighted random order among equal priorities, backends whose circuit
breaker is open (:mod:`.breaker`) left out. The relay walks that order on 429s and connection
failures.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from ..vault.vault import Vault
from .breaker import Breakers
from .credentials import CredentialProvider, provider_for
from .settings import UpstreamSettings
from .tls import trust

__all__ = ["Upstream", "Target", "UpstreamPool"]


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    endpoint: str  # scheme://host[:port][/prefix], no trailing slash
    provider: CredentialProvider
    ssl: ssl.SSLContext | bool = True  # what its certificate is checked against (tls.py)


@dataclass(frozen=True, slots=True)
class Target:
    upstream: Upstream
    deployment: str  # the deployment name at the upstream
    priority: int = 0
    weight: int = field(default=1, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return self.upstream.name, self.deployment


def _weighted_order(targets: list[Target], rng: random.Random) -> list[Target]:
    """Equal-priority targets in a random order where heavier ones tend to come first."""
    if len(targets) < 2:
        return targets
    # Efraimidis-Spirakis: sort by u ** (1 / weight), largest first.
    return sorted(targets, key=lambda t: rng.random() ** (1.0 / t.weight), reverse=True)


class UpstreamPool:
    def __init__(
        self,
        upstreams: list[Upstream],
        targets: Mapping[str, Target | list[Target]],
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.upstreams = upstreams
        self._backends: dict[str, list[Target]] = {}
        for name, value in targets.items():
            backends = value if isinstance(value, list) else [value]
            self._backends[name] = sorted(backends, key=lambda t: t.priority)
        self.breakers = Breakers()
        self._clock = clock
        self._rng = rng or random.Random()

    @classmethod
    def from_settings(
        cls,
        settings: Sequence[UpstreamSettings],
        *,
        vault: Vault,
        environ: Mapping[str, str],
        refresh_s: float,
    ) -> UpstreamPool:
        """The configured upstreams; keys in a vault are re-read every ``refresh_s``."""
        upstreams: list[Upstream] = []
        targets: dict[str, list[Target]] = {}
        for cfg in settings:
            up = Upstream(
                cfg.name,
                cfg.endpoint,
                provider_for(
                    cfg.credential,
                    vault=vault,
                    environ=environ,
                    refresh_s=refresh_s,
                ),
                trust(cfg.ca_file),
            )
            upstreams.append(up)
            for name, dep in cfg.deployments.items():
                target = Target(up, dep.upstream_deployment or name, dep.priority, dep.weight)
                targets.setdefault(name, []).append(target)
        return cls(upstreams, targets)

    def resolve(self, deployment: str) -> Target | None:
        """The backend to try first for ``deployment`` (``None``: not served here)."""
        backends = self._backends.get(deployment)
        if backends is None:
            return None
        if len(backends) == 1:
            return backends[0]
        plan = self.plan(deployment)
        return plan[0] if plan else backends[0]

    def plan(self, deployment: str, first: Target | None = None) -> list[Target]:
        """The backends to try, in order, leaving out those whose breaker is open."""
        backends = self._backends.get(deployment, [])
        if len(backends) == 1:
            return list(backends)  # one backend: no order to choose, its 429s pass through
        now = self._clock()
        live = [t for t in backends if not self.breakers.is_open(t.key, now)]
        if len(live) > 1:
            ordered: list[Target] = []
            for priority in sorted({t.priority for t in live}):
                same = [t for t in live if t.priority == priority]
                ordered += _weighted_order(same, self._rng)
            live = ordered
        if first is not None and first in live:
            live.remove(first)
            live.insert(0, first)
        return live

    def backends(self, deployment: str) -> int:
        """How many backends serve ``deployment``."""
        return len(self._backends.get(deployment, ()))

    def retry_in(self, deployment: str) -> float:
        """Seconds until the first backend of ``deployment`` is back (all breakers open)."""
        now = self._clock()
        ends = [self.breakers.open_until(t.key) for t in self._backends.get(deployment, [])]
        return max(0.0, min(ends, default=now) - now)

    def failed(self, target: Target, retry_after_s: float | None) -> float:
        return self.breakers.failed(target.key, self._clock(), retry_after_s)

    def succeeded(self, target: Target) -> None:
        self.breakers.succeeded(target.key)

    def deployments(self) -> list[str]:
        return sorted(self._backends)

    def unavailable(self, down: Collection[str] = ()) -> list[str]:
        """The deployments none of whose backends is in service: its breaker open, or its
        upstream among ``down`` (names of upstreams found unreachable)."""
        now = self._clock()
        return sorted(
            name
            for name, backends in self._backends.items()
            if all(t.upstream.name in down or self.breakers.is_open(t.key, now) for t in backends)
        )

    async def start(self) -> None:
        for up in self.upstreams:
            await up.provider.start()

    async def close(self) -> None:
        for up in self.upstreams:
            await up.provider.close()
