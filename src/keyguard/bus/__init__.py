"""What one replica tells the others at once: blocks, key and policy changes, refused
credentials.

``bus_from_url("redis://...", key)`` picks the backend by URL through one table: ``memory``
(one process: nothing to tell), Redis pub/sub, or PostgreSQL ``LISTEN/NOTIFY`` (replicas with
a PostgreSQL store and no Redis). See :mod:`.base`.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from .base import Bus, MemoryBus, Message, sign, verify
from .receive import Receiver

__all__ = [
    "Bus",
    "BUSES",
    "MemoryBus",
    "Message",
    "Receiver",
    "bus_from_url",
    "sign",
    "verify",
]


def _redis(
    url: str, key: bytes, replica: str, password: str | None, channel: str, listen: bool
) -> Bus:
    from .redis import RedisBus

    return RedisBus(url, key, replica, password=password, channel=channel, listen=listen)


def _postgres(
    url: str, key: bytes, replica: str, password: str | None, channel: str, listen: bool
) -> Bus:
    from .postgres import PostgresBus

    return PostgresBus(url, key, replica, channel=channel, listen=listen)


def _memory(
    url: str, key: bytes, replica: str, password: str | None, channel: str, listen: bool
) -> Bus:
    return MemoryBus()


BUSES: dict[str, Callable[[str, bytes, str, str | None, str, bool], Bus]] = {
    "memory": _memory,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
    "postgresql": _postgres,
    "postgres": _postgres,
}


def bus_from_url(
    url: str | None,
    key: bytes,
    replica: str,
    *,
    password: str | None = None,
    channel: str = "keyguard:bus",
    listen: bool = True,
) -> Bus:
    scheme = "memory" if url in (None, "memory") else urlsplit(url).scheme
    factory = BUSES.get(scheme)
    if factory is None:
        raise ConfigurationError(
            "cluster.bus: unknown bus; use redis://HOST:PORT or the store's postgresql:// URL"
        )
    return factory(url or "memory", key, replica, password, channel, listen)
