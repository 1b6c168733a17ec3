"""The replica bus, wired: what this gateway tells the others, and what it does with what they
tell it (see :mod:`keyguard.bus`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextlib import AsyncExitStack

from ..bus import Bus, Message, bus_from_url
from ..identity.keys import KeyAuthenticator
from ..respond.blocks import BlockList
from .runtime import Runtime

__all__ = ["BUS_KEY", "blocks_from_bus", "invalidation", "start_bus"]

log = logging.getLogger("keyguard.bus")

BUS_KEY = "keyguard/bus-key"  # an internal vault secret: messages are signed with it
_KEY_ID = re.compile(r"[0-9A-Za-z]{12}")
_KINDS = frozenset({"key", "app", "source", "address"})


async def start_bus(stack: AsyncExitStack, runtime: Runtime, replica: str) -> Bus:
    settings = runtime.settings
    url = settings.bus_url
    password = None
    limits = settings.limits
    if url == limits.backend and limits.redis_password_vault:
        password = await runtime.vault.get(limits.redis_password_vault)
    key = await runtime.vault.get_or_create_random(BUS_KEY)
    bus = bus_from_url(url, key, replica, password=password, channel=settings.cluster.channel)
    await bus.start()
    stack.push_async_callback(bus.close)
    if url is not None:
        log.info("bus: replicas talk over %s", url.split("@")[-1])
    return bus


def invalidation(keys: KeyAuthenticator, bus: Bus) -> Callable[[str], None]:
    """Drop a changed key's cached record here, and tell every replica to drop theirs; and
    do what the other replicas tell."""

    def received(message: Message) -> None:
        key_id = message.data.get("id")
        if isinstance(key_id, str) and _KEY_ID.fullmatch(key_id):
            keys.invalidate(key_id)

    bus.subscribe("key", received)

    def invalidate(key_id: str) -> None:
        keys.invalidate(key_id)
        bus.publish("key", {"id": key_id})

    return invalidate


def blocks_from_bus(blocks: BlockList, bus: Bus) -> None:
    """Apply the blocks other replicas' responders put in place, at once."""

    def received(message: Message) -> None:
        data = message.data
        kind, name, until = data.get("kind"), data.get("name"), data.get("until")
        if kind not in _KINDS or not isinstance(name, str) or not 0 < len(name) <= 200:
            return
        if not isinstance(until, int | float) or isinstance(until, bool):
            return
        if until > 0:
            blocks.add(str(kind), name, float(until))
        else:
            blocks.remove(str(kind), name)

    bus.subscribe("block", received)
