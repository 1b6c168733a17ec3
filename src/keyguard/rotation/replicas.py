"""Which upstream key version every gateway replica serves, so a rotation knows when all of
them switched before it regenerates the old key.

Each gateway runs a :class:`ReplicaReporter`: for every upstream whose provider serves a stored
key, it writes ``(replica, upstream, version, switched_at, seen_at)`` to the store at once when
the provider switches, and every ``interval_s`` seconds otherwise (a heartbeat). A replica that
stops cleanly removes its rows; one that died stops being counted ``replica_ttl`` after its last
heartbeat. :func:`switch_status` is the pure decision the rotation runner polls.

The switch-over bound is explicit: a replica serves a new version at most
``rotation.credential_refresh_s`` after it is stored (its provider re-reads that often; the
runner switches its own process at once), and says so within the same interval.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..core.tasks import PeriodicTask
from ..errors import GatewayError
from ..upstream.credentials import VersionedProvider
from .store import ReplicaAck, RotationStore

__all__ = ["ReplicaReporter", "SwitchStatus", "switch_status", "replica_ttl"]

log = logging.getLogger("keyguard.rotation")


def replica_ttl(interval_s: float) -> timedelta:
    """How long after its last heartbeat a replica still counts (generous: a slow replica
    wrongly counted as gone could still be serving the old key)."""
    return timedelta(seconds=max(3 * interval_s, 30.0))


@dataclass(frozen=True, slots=True)
class SwitchStatus:
    done: bool
    waiting: tuple[str, ...]  # live replicas not yet serving the version
    last_switch: datetime | None  # when the last live replica started serving it


def switch_status(
    acks: Sequence[ReplicaAck], version: str, now: datetime, ttl: timedelta
) -> SwitchStatus:
    """Whether every live replica serves ``version`` (pure)."""
    live = [a for a in acks if now - a.seen_at <= ttl]
    waiting = tuple(sorted(a.replica for a in live if a.version != version))
    switches = [a.switched_at for a in live if a.version == version and a.switched_at]
    return SwitchStatus(not waiting, waiting, max(switches) if switches else None)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ReplicaReporter:
    """Reports the key versions this replica serves (one background task)."""

    def __init__(
        self,
        store: RotationStore,
        replica: str,
        providers: Mapping[str, VersionedProvider],
        *,
        interval_s: float,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._store = store
        self.replica = replica
        self._providers = dict(providers)
        self._interval = interval_s
        self._clock = clock
        self._task = PeriodicTask(
            "report of the upstream key versions served", self.report, interval=interval_s
        )
        for provider in self._providers.values():
            provider.on_change(self._task.wake)

    async def start(self) -> None:
        if not self._providers:
            return
        await self.report()
        self._task.start()

    async def report(self) -> None:
        now = self._clock()
        for upstream, provider in self._providers.items():
            switched = provider.switched_at
            await self._store.ack(
                ReplicaAck(
                    replica=self.replica,
                    upstream=upstream,
                    version=provider.version,
                    switched_at=None if switched is None else datetime.fromtimestamp(switched, UTC),
                    seen_at=now,
                )
            )

    async def close(self) -> None:
        await self._task.close()
        if self._providers:
            with contextlib.suppress(GatewayError):
                await self._store.forget_replica(self.replica)
