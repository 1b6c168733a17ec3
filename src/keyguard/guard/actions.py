"""What a role does with what the guardrails find: block, redact, alert, log or nothing.

``GuardActions`` is the ``guardrails:`` entry of a role in the policy: one action per family
(``secret``, ``personal``, ``custom``, ``attack``, ``harm``) and overrides per category. The
defaults block secrets, alert on personal data and leave the rest off. ``action_for`` is the
pure decision for one match.
"""

from __future__ import annotations

from typing import Literal

from keyguard.core.settings import Frozen
from keyguard.guard.findings import Family

__all__ = ["Action", "GuardActions", "action_for"]

Action = Literal["block", "redact", "alert", "log", "off"]


class GuardActions(Frozen):
    secret: Action = "block"
    personal: Action = "alert"
    custom: Action = "block"
    attack: Action = "off"
    harm: Action = "off"
    categories: dict[str, Action] = {}


def action_for(family: Family, category: str, actions: GuardActions) -> Action:
    """The action for one match: the category's override, else its family's."""
    override = actions.categories.get(category)
    if override is not None:
        return override
    result: Action = getattr(actions, family)
    return result
