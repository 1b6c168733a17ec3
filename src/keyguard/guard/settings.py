"""``guardrails:`` in the configuration: the local detectors' rules and the model-based layer.

The actions (block, redact, alert, log) are per role, in the policy (``keyguard.guard.actions``);
this section says what the detectors look for and how the model-based layer is reached.
"""

from __future__ import annotations

from keyguard.core.settings import Frozen
from keyguard.guard.content_safety_settings import ContentSafetySettings

__all__ = ["GuardSettings"]


class GuardSettings(Frozen):
    """The guardrails' configuration (its fields grow with the detectors)."""

    #: Azure AI Content Safety, the model-based layer (none: not used)
    content_safety: ContentSafetySettings | None = None
