"""The replica bus, wired: what this gateway tells the others, and what it does with what they
tell it (see :mod:`keyguard.bus`).

========  =====================================  ==========================================
topic     published when                         applied by the others
========  =====================================  ==========================================
key       a key is created, revoked, suspended,  the cached record is dropped, the id known
          resumed or rotated (admin API, CLI,
          automatic responses)
policy    a managed policy write                 the policy reload runs now
block     a throttle or block is put in place    the block list refuses (``until`` > 0) or
          (responder) or lifted (an incident     forgets (``until`` = 0) the subject
          resolved)
refused   a credential was refused here          counted by the stuffing detector
admin-    an admin token is revoked (admin API,  the cached record is dropped
token     CLI)
========  =====================================  ==========================================
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

from ..admin.tokens import AdminTokenService
from ..bus import Bus, Message, Receiver, bus_from_url
from ..bus.receive import REASONS
from ..identity.key_index import KeyIdIndex
from ..identity.keys import KeyAuthenticator
from ..metrics import GatewayMetrics
from ..policy.source import PolicySource
from ..respond.blocks import BlockList, subject_key
from .runtime import Runtime

__all__ = [
    "BUS_KEY",
    "Announcer",
    "admin_tokens_from_bus",
    "blocks_from_bus",
    "bus_gauges",
    "incident_changes",
    "cli_bus",
    "invalidation",
    "lifting",
    "policy_from_bus",
    "start_bus",
]

log = logging.getLogger("keyguard.bus")

BUS_KEY = "keyguard/bus-key"  # an internal vault secret: messages are signed with it
_KEY_ID = re.compile(r"[0-9A-Za-z]{12}")
_INCIDENT_ID = re.compile(r"[0-9a-f]{16}")
_KINDS = frozenset({"key", "app", "source", "address"})


async def start_bus(
    stack: AsyncExitStack, runtime: Runtime, replica: str, *, listen: bool = True
) -> Bus:
    settings = runtime.settings
    url = settings.bus_url
    password = None
    limits = settings.limits
    if url == limits.backend and limits.redis_password_vault:
        password = await runtime.vault.get(limits.redis_password_vault)
    key = await runtime.vault.get_or_create_random(BUS_KEY)
    bus = bus_from_url(
        url, key, replica, password=password, channel=settings.cluster.channel, listen=listen
    )
    await bus.start()
    stack.push_async_callback(bus.close)
    if url is not None and listen:
        log.info("bus: replicas talk over %s", url.split("@")[-1])
    return bus


async def cli_bus(stack: AsyncExitStack, runtime: Runtime) -> Bus | None:
    """A publisher for a command that changes keys, the policy or blocks, so that the running
    replicas apply the change at once; ``None`` when no bus is configured."""
    if runtime.settings.bus_url is None:
        return None
    return await start_bus(stack, runtime, f"cli-{os.getpid()}", listen=False)


@dataclass(frozen=True)
class Announcer:
    """The admin service's hooks: what a change made here tells the replicas."""

    key_changed: Callable[[str], None]
    policy_changed: Callable[[int], None] | None = None
    blocks_lifted: Callable[[list[str]], None] | None = None
    incident_changed: Callable[[str], None] | None = None

    @classmethod
    def over(cls, bus: Bus) -> Announcer:
        """Announce only (the CLI: there is no cache or block list here to update)."""
        return cls(
            key_changed=lambda key_id: bus.publish("key", {"id": key_id}),
            policy_changed=lambda version: bus.publish("policy", {"version": version}),
            blocks_lifted=_publish_lifted(bus),
            incident_changed=lambda incident_id: bus.publish("incident", {"id": incident_id}),
        )


def invalidation(
    keys: KeyAuthenticator, bus: Bus, index: KeyIdIndex | None = None
) -> Callable[[str], None]:
    """Drop a changed key's cached record here, and tell every replica to drop theirs; and
    do what the other replicas tell (a new key's id is known at once, without a lookup)."""

    def received(message: Message) -> None:
        key_id = message.data.get("id")
        if isinstance(key_id, str) and _KEY_ID.fullmatch(key_id):
            keys.invalidate(key_id)
            if index is not None:
                index.add(key_id)

    bus.subscribe("key", received)

    def invalidate(key_id: str) -> None:
        keys.invalidate(key_id)
        if index is not None:
            index.add(key_id)
        bus.publish("key", {"id": key_id})

    return invalidate


def admin_tokens_from_bus(tokens: AdminTokenService, bus: Bus) -> None:
    """Drop an admin token's cached record when another replica (or the CLI) revoked it."""

    def received(message: Message) -> None:
        token_id = message.data.get("id")
        if isinstance(token_id, str) and _KEY_ID.fullmatch(token_id):
            tokens.forget(token_id)

    bus.subscribe("admin-token", received)


def policy_from_bus(policy: PolicySource | None, bus: Bus) -> Callable[[int], None] | None:
    """Reload the policy when another replica wrote a new managed version; the function that
    tells the others after a write here."""
    if policy is None:
        return None
    source = policy

    def received(message: Message) -> None:
        version = message.data.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and version > 0:
            source.wake()

    bus.subscribe("policy", received)
    return lambda version: bus.publish("policy", {"version": version})


def _publish_lifted(bus: Bus) -> Callable[[list[str]], None]:
    def lifted(subjects: list[str]) -> None:
        for subject in subjects:
            target = subject_key(subject)
            if target is not None:
                bus.publish("block", {"kind": target[0], "name": target[1], "until": 0})

    return lifted


def lifting(blocks: BlockList, bus: Bus) -> Callable[[list[str]], None]:
    """Lift blocks here at once and on every replica (an incident resolved)."""
    publish = _publish_lifted(bus)

    def lift(subjects: list[str]) -> None:
        for subject in subjects:
            target = subject_key(subject)
            if target is not None:
                blocks.remove(*target)
        publish(subjects)

    return lift


def incident_changes(changed: Callable[[str], None] | None, bus: Bus) -> Callable[[str], None]:
    """An operator acknowledged or resolved an incident: ``changed`` here (the responder's
    :meth:`~keyguard.respond.responder.Responder.status_changed`) and on every replica, so
    their next repeat of it learns the status from the store at once."""

    def received(message: Message) -> None:
        incident_id = message.data.get("id")
        if changed is not None and isinstance(incident_id, str):
            if _INCIDENT_ID.fullmatch(incident_id):
                changed(incident_id)

    bus.subscribe("incident", received)

    def announce(incident_id: str) -> None:
        if changed is not None:
            changed(incident_id)
        bus.publish("incident", {"id": incident_id})

    return announce


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


def bus_gauges(metrics: GatewayMetrics, bus: Bus) -> None:
    """The bus's health on ``/metrics`` (counts since the start)."""
    from ..bus.postgres import PostgresBus
    from ..bus.redis import RedisBus

    if not isinstance(bus, RedisBus | PostgresBus):
        return
    live = bus
    metrics.gauge("keyguard_bus_connected",
                  "1 while the replica bus's subscription is open, else 0.",
                  lambda: float(live.connected))  # fmt: skip
    metrics.gauge("keyguard_bus_sent", "Messages this replica published on the bus.",
                  lambda: float(live.sent))  # fmt: skip
    metrics.gauge("keyguard_bus_received", "Bus messages from other replicas, applied.",
                  lambda: float(live.received))  # fmt: skip
    metrics.gauge("keyguard_bus_lost",
                  "Bus messages not sent: the queue was full or the transport unreachable.",
                  lambda: float(live.lost))  # fmt: skip
    for reason in REASONS:
        metrics.gauge(f"keyguard_bus_refused_{reason}",
                      f"Bus messages refused as {reason}.",
                      _refused(live.receiver, reason))  # fmt: skip


def _refused(receiver: Receiver, reason: str) -> Callable[[], float]:
    return lambda: float(receiver.refused[reason])
