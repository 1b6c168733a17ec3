"""The admin service's functions over the audit log's chain: the status of its verification,
computed in the background (:mod:`keyguard.audit.background`), and starting a run now.

Reading the status may start a run when there is none yet or the last is stale (once an hour
at most, one at a time: a viewer cannot make the gateway walk its log more often); starting one
at will is an operator's action. Both are recorded like every admin action.
"""

from __future__ import annotations

from typing import Any

from ..audit.background import BackgroundVerification
from ..errors import BadRequest
from .recording import Actor, Recorded

__all__ = ["AuditActions"]


class AuditActions(Recorded):
    _verification: BackgroundVerification | None

    def _verifier(self) -> BackgroundVerification:
        if self._verification is None:
            raise BadRequest(
                "the audit log's verification does not run here; use 'keyguard audit verify'",
                reason="no_verification",
            )
        return self._verification

    async def audit_verification(self, actor: Actor) -> dict[str, Any]:
        """The whole chain's verification: the last run's result (verified, broken: where,
        incomplete: how far it got; ``null`` when none ran yet) and the run under way. Starts
        a run when there is no result or the last is stale."""
        verifier = self._verifier()
        started = verifier.start_if_stale()
        self._record(
            actor, "audit.verification", "audit", after={"started": started} if started else None
        )
        return {**verifier.to_json(), "started": started}

    async def verify_audit(self, actor: Actor) -> dict[str, Any]:
        """Start a run of the whole chain's verification now, unless one is running."""
        verifier = self._verifier()
        started = verifier.start()
        self._record(actor, "audit.verify", "audit", after={"started": started})
        return {**verifier.to_json(), "started": started}
