"""Who does an admin action (:class:`Actor`), and the one way each is recorded: an
:class:`~keyguard.events.AdminAction` on the event bus naming the actor, the action, the target
and, for changes, what changed -- never a secret.

:class:`Recorded` is what every group of the admin service's functions shares (the clock and
the event bus); :class:`~keyguard.admin.service.AdminService` is composed of those groups.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..events import AdminAction, EventBus
from .settings import AdminRole

__all__ = ["Actor", "Recorded", "key_target", "token_target"]


@dataclass(frozen=True, slots=True)
class Actor:
    id: str  # "admin-token:<id>", "entra:<oid>", "cli:<user>"
    role: AdminRole


_ID = re.compile(r"[0-9A-Za-z]{12}")  # a key id, an admin token id


def key_target(key_id: str) -> str:
    """The audit target for a key id from a path: never something else a caller pasted there
    (a whole key, a token)."""
    return f"key:{key_id}" if _ID.fullmatch(key_id) else "key:?"


def token_target(token_id: str) -> str:
    """The audit target for an admin token id from a path, like :func:`key_target`."""
    return f"admin-token:{token_id if _ID.fullmatch(token_id) else '?'}"


class Recorded:
    """The clock and the event bus every admin service function records its action on."""

    _events: EventBus
    _clock: Callable[[], datetime]

    def now(self) -> datetime:
        return self._clock()

    def _record(
        self,
        actor: Actor,
        action: str,
        target: str,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> datetime:
        now = self._clock()
        self._events.emit(AdminAction(now, actor.id, action, target, before, after))
        return now
