"""The replica bus: small signed messages on a few topics, fire and forget.

Every replica publishes what the others must apply at once and subscribes to the rest:

* ``block``    a subject (key, app, address, network) refused until a time (0: lifted);
* ``key``      a Keyguard key changed (revoked, suspended, resumed, rotated): drop its cache;
* ``refused``  a credential refused here (its keyed digest, address, network, client), so
               that stuffing spread over replicas is counted as one.

A message is JSON, signed with HMAC-SHA256 under an internal vault secret: whoever can write to
the bus's transport (Redis) but not read the vault cannot inject a block or a cache drop. A
message that does not verify is dropped and counted. Delivery is at most once: a replica that
misses a message still applies the change through its periodic reload (blocks from the store
every ``blocks_poll_s``, key records every ``key_cache_ttl_s``), so the bus only makes it fast.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import orjson

__all__ = ["Bus", "MemoryBus", "Message", "Handler", "sign", "verify", "TOPICS"]

log = logging.getLogger("keyguard.bus")

TOPICS = ("block", "key", "refused")
MAX_MESSAGE = 4096  # bytes; larger messages are neither sent nor read


class Message(NamedTuple):
    topic: str
    sender: str  # the publishing replica's id
    data: dict[str, Any]


Handler = Callable[[Message], None]


class Bus(Protocol):
    dropped: int  # messages refused: bad signature, too large, malformed

    def subscribe(self, topic: str, handler: Handler) -> None: ...

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        """Send without waiting (queued; a full queue drops and counts)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def sign(key: bytes, message: Message) -> bytes:
    body = orjson.dumps([message.topic, message.sender, message.data])
    tag = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    return tag + b" " + body


def verify(key: bytes, raw: bytes) -> Message | None:
    """The message, if ``raw`` is one this key signed and well formed; else ``None``."""
    if len(raw) > MAX_MESSAGE:
        return None
    tag, sep, body = raw.partition(b" ")
    if not sep or not hmac.compare_digest(
        tag, hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    ):
        return None
    try:
        topic, sender, data = orjson.loads(body)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return None
    if topic not in TOPICS or not isinstance(sender, str) or not isinstance(data, dict):
        return None
    return Message(topic, sender, data)


class MemoryBus:
    """One process: there is nobody to tell."""

    dropped = 0

    def subscribe(self, topic: str, handler: Handler) -> None:
        return None

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
