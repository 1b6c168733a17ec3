"""The admin service functions: what the admin API and the CLI both call.

Every function takes the :class:`Actor` doing it and leaves an
:class:`~keyguard.events.AdminAction` on the event bus (reads too: who looked at what is part
of the record), naming the actor, the action, the target and, for changes, what changed --
never a secret: a created key or token is returned once to the caller and appears in no event.

Actors: ``admin-token:<id>`` and ``entra:<oid>`` on the admin API, ``cli:<os user>`` on the
command line (which needs access to the store and the master key, and is therefore trusted as
an admin).

The functions are grouped by what they act on, one module each: Keyguard keys
(:mod:`.key_actions`), admin tokens (:mod:`.token_actions`), incidents and the usage read-out
(:mod:`.incident_actions`), the policy (:mod:`.policy_actions`), the audit chain's
verification (:mod:`.audit_actions`); what they share (the
:class:`Actor`, recording an action) is :mod:`.recording`. :class:`AdminService` puts them
together with the process's own functions (``reload``, ``whoami``), and this module is where the
admin API and the CLI import them from.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from ..audit.background import BackgroundVerification
from ..errors import ConfigurationError, RequestError
from ..events import EventBus
from ..keys.service import KeyService
from ..policy.source import PolicySource
from ..rotation.keys import KeyRotationService
from .audit_actions import AuditActions
from .incident_actions import IncidentActions, Incidents
from .key_actions import KeyActions, key_json
from .policy_actions import PolicyActions
from .recording import Actor
from .token_actions import TokenActions, token_json
from .tokens import AdminTokenService
from .usage import UsageReport

__all__ = ["Actor", "AdminService", "ReloadUnavailable", "key_json", "token_json"]


Reloader = Callable[[], Awaitable[dict[str, Any]]]


class ReloadUnavailable(RequestError):
    status = 409
    code = "ReloadUnavailable"


class AdminService(KeyActions, TokenActions, IncidentActions, PolicyActions, AuditActions):
    def __init__(
        self,
        *,
        keys: KeyService,
        tokens: AdminTokenService,
        events: EventBus,
        policy: PolicySource | None = None,
        deployments: Collection[str] = (),
        key_rotation: KeyRotationService | None = None,
        key_grace: timedelta = timedelta(hours=24),
        incidents: Incidents | None = None,
        usage: UsageReport | None = None,
        on_key_change: Callable[[str], None] | None = None,
        on_policy_change: Callable[[int], None] | None = None,
        on_blocks_lifted: Callable[[list[str]], None] | None = None,
        on_incident_change: Callable[[str], None] | None = None,
        verification: BackgroundVerification | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._keys = keys
        self._tokens = tokens
        self._events = events
        self._policy = policy
        self._deployments = tuple(deployments)
        self._key_rotation = key_rotation
        self._key_grace = key_grace
        self._incidents = incidents
        self._usage = usage
        self._on_key_change = on_key_change
        self._on_policy_change = on_policy_change
        self._on_blocks_lifted = on_blocks_lifted
        self._on_incident_change = on_incident_change
        self._verification = verification
        self._clock = clock
        self._reloader: Reloader | None = None

    def set_reloader(self, reloader: Reloader) -> None:
        """What ``reload`` runs: validate the configuration file and hand it to the
        supervisor (set by the process that runs under ``keyguard serve``)."""
        self._reloader = reloader

    # -- the process -------------------------------------------------------------------------

    async def reload(self, actor: Actor) -> dict[str, Any]:
        """Reload the configuration file: every change that can be made live, atomically; an
        invalid file changes nothing (raises :class:`ConfigurationError`, audited too)."""
        reloader = self._reloader
        if reloader is None:
            raise ReloadUnavailable(
                "This gateway does not run under 'keyguard serve'; restart it to change its "
                "configuration."
            )
        try:
            answer = await reloader()
        except ConfigurationError as exc:
            self._record(actor, "config.reload", "config", after={"rejected": str(exc)[:300]})
            raise
        self._record(actor, "config.reload", "config", after=answer)
        return answer

    # -- who -------------------------------------------------------------------------------

    async def whoami(self, actor: Actor) -> dict[str, Any]:
        self._record(actor, "whoami", actor.id)
        return {"actor": actor.id, "role": actor.role}
