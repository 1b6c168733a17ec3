"""``guardrails:`` in the configuration: the local detectors' rules and the model-based layer.

The actions (block, redact, alert, log) are per role, in the policy (``keyguard.guard.actions``);
this section says what the detectors look for and how the model-based layer is reached.
"""

from __future__ import annotations

from pydantic import Field

from keyguard.core.settings import Frozen

__all__ = ["GuardSettings"]


class GuardSettings(Frozen):
    """The guardrails' configuration (its fields grow with the detectors)."""

    # -- in the gateway (the actions are per role, in the policy) --------------------------
    enabled: bool = True  # false: the gateway reads no request or answer for guardrails
    stream_window_chars: int = Field(default=256, ge=16, le=65_536)  # held back per choice
    stream_context_chars: int = Field(default=1024, ge=0, le=65_536)  # re-read before it
