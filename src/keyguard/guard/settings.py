"""``guardrails:`` in the configuration: the local detectors' rules and the model-based layer.

The actions (block, redact, alert, log) are per role, in the policy (``keyguard.guard.actions``);
this section says what the detectors look for and how the model-based layer is reached.
"""

from __future__ import annotations

from keyguard.core.settings import Frozen

__all__ = ["GuardSettings"]


class GuardSettings(Frozen):
    """The guardrails' configuration (its fields grow with the detectors)."""
