"""What a detection rule is given and what it returns: the baselines the request is judged
against (:class:`Baselines`, the state *before* the observation is folded in), the finding
(:class:`Detection`), the rule's signature (:data:`Rule`) and the one way a finding is built from
an observation (:func:`finding`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.observation import Observation
from ..events import Severity
from .declared import Declaration
from .profile import Profile
from .settings import DetectSettings
from .states import AddressState, PeerGroup, PresentedState, PromptState, SourceState
from .windows import Events, Recent

__all__ = ["Baselines", "Detection", "Rule", "detection_fields", "finding", "foreign_network"]


@dataclass(slots=True)  # not frozen: cheaper to build, one per finding
class Detection:
    rule: str
    severity: Severity
    subject: str  # "key:<id>", "source:<prefix>", ...
    summary: str
    at: float
    request_id: str = ""
    key_id: str | None = None
    app: str | None = None
    source: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    repeats: int = 0  # identical findings folded into this one (the monitor's repeat gate)


@dataclass(slots=True)
class Baselines:
    key: Profile | None  # the authenticated key's profile
    app: Profile | None  # its app's profile
    source: SourceState | None  # failed authentications from the request's network
    presented: PresentedState | None  # failed authentications with the presented key id
    address: AddressState | None = None  # credentials refused from the exact address
    client: Recent | None = None  # credentials refused for the client fingerprint, lately
    peers: PeerGroup | None = None  # a new key's peers: its app's, team's or deployment's keys
    prompt: PromptState | None = None  # who sent the same prompt lately
    # failed authentications from the wider IPv6 prefix of the request's address (None: IPv4)
    wide: SourceState | None = None
    sender: str | None = None  # who sent it, for ``prompt``: the app, or its team when it has one
    guarded: Events | None = None  # the key's (or app's) requests the guardrails hit lately
    peers_of: str | None = None  # whose keys ``peers`` are: "app NAME", "team NAME", ...
    declared: Declaration | None = None  # what a new key's limits and role declare
    # credentials refused from anywhere lately (a failed authentication only)
    anywhere: AddressState | None = None
    # whether the refused key id was itself used from the request's network (its own fleet
    # still presenting it after a revocation, not a leak being tried)
    presented_own: bool = False
    # whether the request falls in hours its key (or app) is never used: worked out once, by
    # the first rule that needs it (None: not yet), for the rules and the profile update
    odd_hour: bool | None = None
    # the baseline the request is judged against: the key's once learnt, else its app's
    base: Profile | None = field(init=False)

    def __post_init__(self) -> None:
        key, app = self.key, self.app
        base = key if key is not None and key.mature() else None
        if base is None and app is not None and app.mature():
            base = app
        self.base = base


def foreign_network(view: Baselines, network: str | None, now: float) -> str | None:
    """``network`` unless it is the sender's own (what a prompt's networks count: an app
    autoscaled over its own networks is one sender): one its key or app used before, and
    not first seen by the key within the network rule's window (a thief's networks are not
    made its own by the farm's first requests), else ``None``."""
    if network is None:
        return None
    key = view.key
    if key is not None and key.new_networks.has(network, now):
        return network
    for p in (key, view.app):
        if p is not None and network in p.networks:
            return None
    return network


Rule = Callable[[Baselines, Observation, float, DetectSettings], Detection | None]


def finding(
    rule: str, severity: Severity, obs: Observation, summary: str, **evidence: Any
) -> Detection:
    subject = f"key:{obs.key_id}" if obs.key_id else f"source:{obs.network or obs.source}"
    return Detection(
        rule=rule,
        severity=severity,
        subject=subject,
        summary=summary,
        at=obs.at,
        request_id=obs.request_id,
        key_id=obs.key_id,
        app=obs.app,
        source=obs.network or obs.source,
        evidence={k: v for k, v in evidence.items() if v is not None},
    )


def detection_fields(f: Detection) -> dict[str, Any]:
    """``f``'s fields, for a copy with some of them changed (its subject, its key)."""
    return {name: getattr(f, name) for name in Detection.__dataclass_fields__}
