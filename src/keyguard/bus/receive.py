"""What a replica does with the bytes its transport hands it: bounded, verified, fresh, once.

Anybody who can write to the transport (a Redis client with publish rights, a PostgreSQL role
that may ``NOTIFY``) can send bytes; only a holder of the vault's bus key can sign them. The
:class:`Receiver` takes each raw message through, in this order:

1. **flood**: a token bucket (``rate`` per second, ``burst``) caps the messages even looked at;
   past it they are dropped and counted, before any HMAC is computed. A flood therefore costs
   the replica a bounded share of its CPU and never stalls it; what a flood drops, the periodic
   reloads still apply (the bus only makes changes fast);
2. **forged**: the HMAC-SHA256 tag must verify (:func:`.base.verify`), in constant time;
3. **own**: a replica's own messages come back to it (pub/sub) and are skipped;
4. **stale**: ``at`` must be within ``max_age`` of this replica's clock (either way), so a
   recorded message cannot be replayed later;
5. **replayed**: the ``nonce`` must not have been seen within that window. The set of nonces is
   bounded (``max_seen``); when it is full the message is refused rather than remembered.

Then each of the topic's handlers runs; a failing handler is logged, never raised.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable

from ..core.bucket import TokenBucket
from .base import MAX_AGE_S, Handler, Message, verify

__all__ = ["REASONS", "Receiver"]

log = logging.getLogger("keyguard.bus")

REASONS = ("flood", "forged", "stale", "replayed")


class Receiver:
    def __init__(
        self,
        key: bytes,
        replica: str,
        *,
        rate: float = 2000.0,
        burst: float = 4000.0,
        max_age: float = MAX_AGE_S,
        max_seen: int = 200_000,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._key = key
        self._replica = replica
        self._max_age = max_age
        self._max_seen = max_seen
        self._clock = clock
        self._monotonic = monotonic
        self._bucket = TokenBucket(burst, rate, monotonic())
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce -> when it may be forgotten
        self.handlers: dict[str, list[Handler]] = defaultdict(list)
        self.received = 0
        self.refused: dict[str, int] = dict.fromkeys(REASONS, 0)

    @property
    def dropped(self) -> int:
        return sum(self.refused.values())

    def subscribe(self, topic: str, handler: Handler) -> None:
        self.handlers[topic].append(handler)

    def deliver(self, raw: bytes) -> Message | None:
        """Take one raw message through the checks; the message if it was handled."""
        if not self._bucket.take(self._monotonic()):
            return self._refuse("flood")
        message = verify(self._key, raw)
        if message is None:
            return self._refuse("forged")
        if message.sender == self._replica:
            return None
        now = self._clock()
        if abs(now - message.at) > self._max_age:
            return self._refuse("stale")
        if not self._first_time(message.nonce, message.at, now):
            return self._refuse("replayed")
        self.received += 1
        for handler in self.handlers.get(message.topic, ()):
            try:
                handler(message)
            except Exception:
                log.exception("bus: a %s handler failed", message.topic)
        return message

    def _refuse(self, reason: str) -> Message | None:
        self.refused[reason] += 1
        total = self.refused[reason]
        if total & (total - 1) == 0:  # 1, 2, 4, 8, ...: a flood is visible, not a log flood
            log.warning("bus: refused %d message(s) so far as %s", total, reason)
        return None

    def _first_time(self, nonce: str, at: float, now: float) -> bool:
        seen = self._seen
        while seen:  # forget the nonces of messages that are too old to be accepted anyway
            oldest, forget_at = next(iter(seen.items()))
            if forget_at > now:
                break
            del seen[oldest]
        if nonce in seen or len(seen) >= self._max_seen:
            return False
        seen[nonce] = at + self._max_age
        return True
