"""How often one client may try to sign in to the console: a token bucket per client address.

Every attempt -- ``POST /sign-in`` with a token, the callback of an Entra ID sign-in -- takes
a token from its address's bucket (``burst`` tokens, refilled at ``per_s`` a second); an
attempt finding it empty is refused (429, with the seconds until the next token in
``Retry-After``) before anything else is read, so an empty bucket says nothing about whether a
guess was right. A sign-in that succeeds gives its token back (:meth:`SignInThrottle.refund`):
only failures drain a bucket, and an operator who signs in often is never refused for it. A
look that takes nothing (``take=False``: the start of an Entra ID sign-in) is refused only when
the bucket is empty. Time that runs backwards (a wall clock stepped back) refills nothing: a
bucket's time only moves forward. An IPv6 client is counted by its /64 (one
host holds a whole /64), an IPv4 one by its address; a request without an address shares one
bucket. Pure: the time is passed in. Bounded: at most ``max_addresses`` buckets, the least
recently used forgotten first (a forgotten bucket is a full one, and a full bucket is forgotten
anyway: it says nothing).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from ..core.bucket import TokenBucket
from ..core.observation import network_of

__all__ = ["Attempt", "SignInThrottle"]

BURST = 10
PER_S = 1 / 6  # ten a minute, once the burst is spent
MAX_ADDRESSES = 10_000


@dataclass(frozen=True, slots=True)
class Attempt:
    """What the throttle says about one attempt: allowed, or refused for ``retry_after``
    seconds; ``first`` is the first refusal since the address was last allowed (the one worth
    a security event: a flood of refusals is one event, not one per request)."""

    allowed: bool
    retry_after: int = 0
    first: bool = False


class _Bucket(TokenBucket):
    __slots__ = ("refused",)

    def __init__(self, burst: float, rate: float, now: float) -> None:
        super().__init__(burst, rate, now)
        self.refused = False  # refused since it last allowed an attempt


class SignInThrottle:
    def __init__(
        self, *, burst: int = BURST, per_s: float = PER_S, max_addresses: int = MAX_ADDRESSES
    ) -> None:
        if burst < 1 or per_s <= 0 or max_addresses < 1:
            raise ValueError("the sign-in throttle needs a positive burst, rate and size")
        self._burst = float(burst)
        self._per_s = per_s
        self._max = max_addresses
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def attempt(self, address: str | None, now: float, *, take: bool = True) -> Attempt:
        """Take a token (with ``take``, else only look) for an attempt from ``address`` at
        ``now`` (seconds)."""
        bucket = self._bucket(address, now)
        if bucket.take(now) if take else bucket.refill(now) >= 1:
            bucket.refused = False
            return Attempt(True)
        first = not bucket.refused
        bucket.refused = True
        wait = math.ceil((1 - bucket.tokens) / self._per_s)
        return Attempt(False, max(1, wait), first)

    def refund(self, address: str | None, now: float) -> None:
        """Give back the token a sign-in from ``address`` took: it succeeded."""
        self._bucket(address, now).give_back(now)

    def _bucket(self, address: str | None, now: float) -> _Bucket:
        key = (network_of(address, 32, 64) or address[:64]) if address else "-"
        bucket = self._buckets.pop(key, None) or _Bucket(self._burst, self._per_s, now)
        self._buckets[key] = bucket  # the most recently used last
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return bucket
