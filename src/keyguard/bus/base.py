"""The replica bus: small signed messages on a few topics, fire and forget.

Every replica publishes what the others must apply at once and subscribes to the rest:

* ``block``    a subject (key, app, address, network) refused until a time (0: lifted);
* ``key``      a Keyguard key changed (created, revoked, suspended, resumed, rotated): drop its
               cached record, know its id;
* ``policy``   the managed policy has a new version: reload it now;
* ``refused``  a credential refused here (its keyed digest, address, network, client), so
               that stuffing spread over replicas is counted as one;
* ``admin-token`` an admin token was revoked: drop its cached record.

A message is JSON ``[topic, sender, data, at, nonce]``, signed with HMAC-SHA256 under an
internal vault secret: whoever can write to the bus's transport (Redis) but not read the vault
cannot inject a block, a cache drop or a reload. ``at`` (the sender's clock) and ``nonce`` bound
a replay: a message older than ``MAX_AGE_S`` or already seen is refused (:mod:`.receive`). A
message that does not verify is dropped and counted. Delivery is at most once: a replica that
misses a message still applies the change through its periodic reload (blocks from the store
every ``blocks_poll_s``, key and admin token records every ``key_cache_ttl_s``, the policy every
``reload_interval_s``), so the bus only makes it fast.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import orjson

__all__ = [
    "Bus",
    "MemoryBus",
    "Message",
    "Handler",
    "MAX_AGE_S",
    "MAX_MESSAGE",
    "sign",
    "verify",
    "TOPICS",
]

log = logging.getLogger("keyguard.bus")

TOPICS = ("admin-token", "block", "key", "policy", "refused")
MAX_MESSAGE = 4096  # bytes; larger messages are neither sent nor read
MAX_AGE_S = 30.0  # a message older (or newer) than this by the receiver's clock is refused


class Message(NamedTuple):
    topic: str
    sender: str  # the publishing replica's id
    data: dict[str, Any]
    at: float = 0.0  # the sender's wall clock when it published (Unix seconds)
    nonce: str = ""  # random, once per message: a replay is recognised by it


Handler = Callable[[Message], None]


class Bus(Protocol):
    @property
    def dropped(self) -> int:
        """Messages refused or lost: bad signature, stale, replayed, flood, queue full."""
        ...

    def subscribe(self, topic: str, handler: Handler) -> None: ...

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        """Send without waiting (queued; a full queue drops and counts)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Stop; what is still queued is sent first, for a short while at most."""
        ...


def new_nonce() -> str:
    return secrets.token_hex(8)


def sign(key: bytes, message: Message) -> bytes:
    body = orjson.dumps([message.topic, message.sender, message.data, message.at, message.nonce])
    tag = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    return tag + b" " + body


def verify(key: bytes, raw: bytes) -> Message | None:
    """The message, if ``raw`` is one this key signed and well formed; else ``None``. Whether it
    is fresh is :class:`.receive.Receiver`'s business."""
    if len(raw) > MAX_MESSAGE:
        return None
    tag, sep, body = raw.partition(b" ")
    if not sep or not hmac.compare_digest(
        tag, hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    ):
        return None
    try:
        topic, sender, data, at, nonce = orjson.loads(body)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return None
    if topic not in TOPICS or not isinstance(sender, str) or not isinstance(data, dict):
        return None
    if not isinstance(at, int | float) or isinstance(at, bool):
        return None
    if not isinstance(nonce, str) or not 8 <= len(nonce) <= 64:
        return None
    return Message(topic, sender, data, float(at), nonce)


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
