"""What a role does with what the guardrails find: block, redact, alert, log or nothing.

``GuardActions`` is the ``guardrails:`` entry of a role in the policy: one action per family
(``secret``, ``personal``, ``custom``, ``attack``, ``harm``), overrides per category, and
``restore`` (redacted values put back into the same caller's answer). The defaults block
secrets, alert on personal data and leave the rest off. The model itself lives in
:mod:`keyguard.policy.guardrails` (below this package, so a role can carry it); ``Effective``
is the combination in force for one request (the strictest action of every role that allows
it). ``action_for`` is the pure decision for one match.
"""

from __future__ import annotations

from keyguard.guard.findings import Family
from keyguard.policy.guardrails import (
    ACTIONS,
    DEFAULTS,
    Action,
    Effective,
    GuardActions,
    rank,
)

__all__ = ["ACTIONS", "DEFAULTS", "Action", "Effective", "GuardActions", "action_for", "rank"]


def action_for(family: Family, category: str, actions: GuardActions | Effective) -> Action:
    """The action for one match: the category's override, else its family's (with several
    roles in force, the strictest of theirs)."""
    return actions.action(family, category)
