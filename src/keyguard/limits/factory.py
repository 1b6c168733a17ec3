"""The counters' backend, picked by URL through one explicit table: ``memory`` (in-process,
default) or ``redis://`` / ``rediss://`` / ``unix://`` (shared by every replica). See
``docs/limits.md``; :mod:`keyguard.wiring.limits` builds the admission hook around it.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from .backend import Backend, MemoryBackend
from .redis_backend import RedisBackend
from .settings import LimitSettings

__all__ = ["backend_from_url", "BACKENDS"]


def _memory(settings: LimitSettings, password: str | None) -> Backend:
    return MemoryBackend(journal_max_len=settings.journal_max_len)


def _redis(settings: LimitSettings, password: str | None) -> Backend:
    return RedisBackend(
        settings.backend,
        prefix=settings.redis_key_prefix,
        timeout_s=settings.redis_timeout_s,
        lease_s=settings.concurrency_lease_s,
        journal_max_len=settings.journal_max_len,
        password=password,
    )


BACKENDS: dict[str, Callable[[LimitSettings, str | None], Backend]] = {
    "memory": _memory,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
}


def backend_from_url(settings: LimitSettings, password: str | None = None) -> Backend:
    scheme = "memory" if settings.backend == "memory" else urlsplit(settings.backend).scheme
    factory = BACKENDS.get(scheme)
    if factory is None:
        raise ConfigurationError(f"limits.backend: unknown backend {settings.backend!r}")
    return factory(settings, password)
