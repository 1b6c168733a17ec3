"""Fair share of the upstream connection pool: no caller holds what the others need.

Every request forwarded upstream holds one of the pool's ``max_upstream_connections`` for as
long as Azure takes to answer, which for a language model is seconds to minutes. Without a
share per caller, one app with a few hundred slow requests in flight takes the whole pool and
every other app's request waits for a connection until it times out. :class:`FairShare`
counts the requests in flight per caller (a Keyguard key, or an Entra identity) and per app,
and refuses one beyond either cap at once, with Azure's 429 and ``retry-after: 1``, before it
takes a connection. It is always on; the caps are fractions of the pool
(``proxy.upstream_share_per_caller``, ``proxy.upstream_share_per_app``).

Refused rather than queued: a slot frees when a model call ends, seconds away, so a short wait
would rarely succeed and would hold the client's connection and body meanwhile; the SDKs
retry a 429 after its ``retry-after``. The counts are this process's, like the pool.
"""

from __future__ import annotations

from ..core.principal import Principal
from ..errors import TooManyRequests
from ..limits.model import retry_after_headers

__all__ = ["FairShare", "Share", "share_caps"]

_RETRY = retry_after_headers(1)  # Azure's pair: 1 s


def share_caps(pool: int, per_caller: float, per_app: float) -> tuple[int, int]:
    """The caps for fractions of a pool of ``pool`` connections (each at least 1)."""
    return max(1, int(pool * per_caller)), max(1, int(pool * per_app))


#: what a forwarded request holds: its caller and its app (a plain tuple: one per request)
Share = tuple[str, str]


class FairShare:
    def __init__(self, *, per_caller: int, per_app: int) -> None:
        self.per_caller = per_caller
        self.per_app = per_app
        self.refused = 0
        self._callers: dict[str, int] = {}
        self._apps: dict[str, int] = {}

    @property
    def in_flight(self) -> int:
        return sum(self._apps.values())

    def take(self, principal: Principal | None) -> Share:
        """Count one more request in flight for ``principal``, or raise 429."""
        caller, app = (principal.id, principal.app) if principal is not None else ("", "")
        callers, apps = self._callers, self._apps
        held_caller, held_app = callers.get(caller, 0), apps.get(app, 0)
        if held_caller >= self.per_caller:
            self.refused += 1
            raise TooManyRequests(
                f"This credential already has {held_caller} requests in flight through this "
                "gateway, its share of the upstream connections. Wait for one to finish, or "
                "retry after 1 second.",
                reason="fair_share_caller",
                headers=_RETRY,
            )
        if held_app >= self.per_app:
            self.refused += 1
            raise TooManyRequests(
                f"This app already has {held_app} requests in flight through this gateway, its "
                "share of the upstream connections. Wait for one to finish, or retry after 1 "
                "second.",
                reason="fair_share_app",
                headers=_RETRY,
            )
        callers[caller] = held_caller + 1
        apps[app] = held_app + 1
        return caller, app

    def give_back(self, share: Share) -> None:
        caller, app = share
        callers, apps = self._callers, self._apps
        left = callers[caller] - 1
        if left:
            callers[caller] = left
        else:
            del callers[caller]
        left = apps[app] - 1
        if left:
            apps[app] = left
        else:
            del apps[app]
