"""The detection rules: pure functions ``rule(view, obs, now, settings) -> Detection | None``.

A rule reads the state *before* the observation is folded in (:class:`Baselines`), never a clock
(``now`` is passed in), never I/O. Each rule is switched on and tuned in
:class:`~keyguard.detect.settings.DetectSettings`; ``docs/monitoring.md`` documents the signal,
the default threshold and the default response of each.

Baseline: a key's own profile once it has learnt enough (``learning_requests`` requests over
``learning_days``), else its app's (a freshly rotated key inherits what its app does), else
none: novelty rules stay quiet while learning and the rate rules use absolute thresholds.

Each family is a module: the rules one request decides (:mod:`.request_rules`), the rules
that count within a window (:mod:`.window_rules`), the rules against a baseline
(:mod:`.baseline_rules`); what every rule takes and returns is :mod:`.detection`.
"""

from __future__ import annotations

from .baseline_rules import (
    burst,
    model_mix,
    network,
    reseller,
    sustained,
    unusual_time,
    velocity,
)
from .detection import Rule
from .request_rules import decoy, key_probe, raw_azure_key
from .window_rules import enumeration, guardrail_repeat, repetition, stuffing

__all__ = ["RULE_FUNCTIONS"]


RULE_FUNCTIONS: dict[str, Rule] = {
    "decoy": decoy,
    "raw_azure_key": raw_azure_key,
    "key_probe": key_probe,
    "stuffing": stuffing,
    "enumeration": enumeration,
    "network": network,
    "velocity": velocity,
    "reseller": reseller,
    "repetition": repetition,
    "unusual_time": unusual_time,
    "guardrail_repeat": guardrail_repeat,
    "burst": burst,
    "model_mix": model_mix,
    "sustained": sustained,
}
