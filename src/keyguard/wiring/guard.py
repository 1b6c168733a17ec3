"""Wiring of the guardrails in the gateway: the engine from ``guardrails:``, the proxy's stage.

:func:`build_engine` is the one place the local detectors are built from the settings (tests
put an engine of their own in through it); :func:`guard_stage` gives the proxy its ``guard``
stage, with the vault's fingerprint key for the decisions' fingerprints (as the scanner
reports them) and the policy in force for each role's actions. ``guardrails.enabled: false``
leaves the stage out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from ..guard.engine import GuardEngine
from ..guard.settings import GuardSettings
from ..metrics.registry import GatewayMetrics
from ..policy.source import PolicySource
from ..proxy.guardrails import GuardStage
from .runtime import Runtime

__all__ = ["build_engine", "guard_gauges", "guard_stage"]


def build_engine(settings: GuardSettings) -> GuardEngine:
    """The local detectors the settings ask for."""
    return GuardEngine(settings)


def guard_stage(
    runtime: Runtime,
    policy: PolicySource | None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> GuardStage | None:
    settings = runtime.settings.guardrails
    if not settings.enabled:
        return None
    source = policy
    return GuardStage(
        build_engine(settings),
        settings,
        fingerprint=runtime.vault.fingerprint,
        events=runtime.events,
        policy=(lambda: source.current) if source is not None else None,
        now=now,
        max_held_bytes=runtime.settings.proxy.max_answer_bytes,
    )


def guard_gauges(metrics: GatewayMetrics, stage: GuardStage) -> None:
    """The large reads' refusals, read when scraped (counted since the start)."""
    reads = stage.big_reads
    metrics.gauge(
        "keyguard_guardrails_busy_refused",
        "Requests refused (429) before their large text was read: too many at once.",
        lambda: float(reads.refused),
    )
