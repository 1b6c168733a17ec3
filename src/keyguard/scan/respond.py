"""Leak to rotation: match findings against managed keys by fingerprint, plan the response.

Everything here is pure: the matcher takes a ``fingerprint -> ManagedSecretRef`` mapping (the
gateway computes it with its own fingerprint key, see ``keyguard.wiring.scan``), the planner
turns matches into actions and security events. Carrying the actions out is the gateway's job.

    finding.fingerprint in managed  ->  SecretLeakDetected event
        upstream key                ->  rotate_upstream  (regenerate the Azure key, re-vault)
        Keyguard key                ->  revoke_keyguard_key (default) or rotate_keyguard_key
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from keyguard.scan.findings import Finding

__all__ = [
    "KeyguardAction",
    "LeakMatch",
    "ManagedSecretRef",
    "ResponseAction",
    "SecretLeakDetected",
    "match_findings",
    "plan_responses",
]

KeyguardAction = Literal["revoke", "rotate"]


@dataclass(frozen=True, slots=True)
class ManagedSecretRef:
    """A secret the gateway manages: an upstream Azure key (vault name) or a Keyguard key id."""

    kind: Literal["upstream", "keyguard"]
    ref: str
    label: str = ""


@dataclass(frozen=True, slots=True)
class LeakMatch:
    finding: Finding
    managed: ManagedSecretRef


@dataclass(frozen=True, slots=True)
class ResponseAction:
    action: Literal["rotate_upstream", "revoke_keyguard_key", "rotate_keyguard_key"]
    ref: str
    fingerprint: str
    location: str


@dataclass(frozen=True, slots=True)
class SecretLeakDetected:
    """Security event: a managed secret was found in a file or a commit."""

    created: datetime
    actor: str
    managed_kind: str
    ref: str
    fingerprint: str
    location: str
    kind: str
    commit: str | None = None
    actions: tuple[str, ...] = field(default_factory=tuple)
    name: str = "secret.leak_detected"


def match_findings(
    findings: Sequence[Finding], managed: Mapping[str, ManagedSecretRef]
) -> list[LeakMatch]:
    """Findings whose fingerprint is a managed secret's, in input order."""
    return [LeakMatch(f, managed[f.fingerprint]) for f in findings if f.fingerprint in managed]


def _location(f: Finding) -> str:
    where = f"{f.file}:{f.line}"
    return f"{where}@{f.commit[:12]}" if f.commit else where


def plan_responses(
    matches: Sequence[LeakMatch],
    now: datetime,
    actor: str = "keyguard-scan",
    keyguard_action: KeyguardAction = "revoke",
) -> tuple[list[ResponseAction], list[SecretLeakDetected]]:
    """One action per leaked managed secret (deduplicated), one event per leak location."""
    actions: dict[tuple[str, str], ResponseAction] = {}
    events: list[SecretLeakDetected] = []
    for m in matches:
        ref = m.managed
        if ref.kind == "upstream":
            action: ResponseAction = ResponseAction(
                "rotate_upstream", ref.ref, m.finding.fingerprint, _location(m.finding)
            )
        elif keyguard_action == "rotate":
            action = ResponseAction(
                "rotate_keyguard_key", ref.ref, m.finding.fingerprint, _location(m.finding)
            )
        else:
            action = ResponseAction(
                "revoke_keyguard_key", ref.ref, m.finding.fingerprint, _location(m.finding)
            )
        actions.setdefault((action.action, ref.ref), action)
        events.append(
            SecretLeakDetected(
                created=now,
                actor=actor,
                managed_kind=ref.kind,
                ref=ref.ref,
                fingerprint=m.finding.fingerprint,
                location=_location(m.finding),
                kind=m.finding.kind,
                commit=m.finding.commit,
                actions=(action.action,),
            )
        )
    return list(actions.values()), events
