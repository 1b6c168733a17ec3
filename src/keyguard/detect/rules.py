"""The detection rules: pure functions ``rule(view, obs, now, settings) -> Detection | None``.

A rule reads the state *before* the observation is folded in (:class:`Baselines`), never a clock
(``now`` is passed in), never I/O. Each rule is switched on and tuned in
:class:`~keyguard.detect.settings.DetectSettings`; ``docs/monitoring.md`` documents the signal,
the default threshold and the default response of each.

Baseline: a key's own profile once it has learnt enough (``learning_requests`` requests over
``learning_days``), else its app's (a freshly rotated key inherits what its app does), else
none: novelty rules stay quiet while learning and the rate rules use absolute thresholds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.observation import Observation
from ..events import Severity
from .declared import Declaration, declared_thresholds
from .profile import (
    AddressState,
    PeerGroup,
    PresentedState,
    Profile,
    PromptState,
    SourceState,
    velocity_thresholds,
)
from .settings import DetectSettings, KeyProbeRule
from .windows import Events, Recent

__all__ = [
    "Detection",
    "Baselines",
    "Rule",
    "RULE_FUNCTIONS",
    "PROBED_OPERATIONS",
    "probe_signature",
    "unusual_hour",
]


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
    guarded: Events | None = None  # the key's (or app's) requests the guardrails hit lately
    peers_of: str | None = None  # whose keys ``peers`` are: "app NAME", "team NAME", ...
    declared: Declaration | None = None  # what a new key's limits and role declare
    # the baseline the request is judged against: the key's once learnt, else its app's
    base: Profile | None = field(init=False)

    def __post_init__(self) -> None:
        key, app = self.key, self.app
        base = key if key is not None and key.mature() else None
        if base is None and app is not None and app.mature():
            base = app
        self.base = base


Rule = Callable[[Baselines, Observation, float, DetectSettings], Detection | None]


def _finding(
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


def decoy(view: Baselines, obs: Observation, now: float, s: DetectSettings) -> Detection | None:
    """6. Any use of a decoy key (or a key of a decoy app), valid or not."""
    hit = obs.key_id in s.decoy_key_ids or obs.presented_key_id in s.decoy_key_ids
    if not hit and not (obs.app is not None and obs.app in s.decoy_apps):
        return None
    f = _finding(
        "decoy",
        "critical",
        obs,
        "A decoy key was used: whoever holds it took it from where it was planted.",
        presented_key_id=obs.presented_key_id,
        user_agent=obs.user_agent,
        status=obs.status,
    )
    key = obs.key_id or obs.presented_key_id
    return Detection(**{**_fields(f), "subject": f"key:{key}", "key_id": key})


def raw_azure_key(
    view: Baselines, obs: Observation, now: float, s: DetectSettings
) -> Detection | None:
    """7. A raw Azure OpenAI key presented to the gateway."""
    if obs.reason != "azure_key_presented":
        return None
    return _finding(
        "raw_azure_key",
        "high",
        obs,
        "A client presented a raw Azure OpenAI key: somebody holds one. Find and rotate it.",
        user_agent=obs.user_agent,
    )


PROBED_OPERATIONS = frozenset({"chat", "completions", "responses"})


def probe_signature(
    empty_prompt: bool,
    max_tokens: int | None,
    temperature: float | None,
    seed: int | None,
    r: KeyProbeRule,
) -> str | None:
    """The shape of a key checker's request, from the request alone (so the gateway can
    refuse it before it is served): a 1-token empty prompt, or an empty context-size probe at
    temperature 0 and seed 0."""
    if not empty_prompt or max_tokens is None:
        return None
    if max_tokens <= r.probe_max_tokens:
        return f"validity probe: empty prompt, max_tokens {max_tokens}"
    if max_tokens >= r.context_probe_tokens and temperature == 0 and seed == 0:
        return f"context-size probe: empty prompt, max_tokens {max_tokens}"
    return None


def key_probe(view: Baselines, obs: Observation, now: float, s: DetectSettings) -> Detection | None:
    """4. Credential resellers' key checkers: a 1-token empty prompt, an empty context-size
    probe at temperature 0 and seed 0, or an api-version such checkers use."""
    r = s.key_probe
    if obs.key_id is None or obs.operation not in PROBED_OPERATIONS:
        return None
    severity: Severity = "high"
    kind = probe_signature(obs.empty_prompt, obs.max_tokens, obs.temperature, obs.seed, r)
    base = view.base
    if kind is None and obs.api_version in r.suspicious_api_versions and base is not None:
        # Alone, an old api-version is only a hint, and only against a baseline without it.
        used = view.key is not None and obs.api_version in view.key.api_versions
        if not used and obs.api_version not in base.api_versions:
            kind, severity = f"api-version {obs.api_version}, as key checkers use", "medium"
    if kind is None:
        return None
    return _finding(
        "key_probe",
        severity,
        obs,
        f"Key-checker request ({kind}): the key is probably being validated for resale.",
        api_version=obs.api_version,
        max_tokens=obs.max_tokens,
        user_agent=obs.user_agent,
    )


def stuffing(view: Baselines, obs: Observation, now: float, s: DetectSettings) -> Detection | None:
    """5. Failed authentications: many key ids from one network, one key id from many
    networks, or a flood of failures from one network."""
    f = _stuffing(view, obs, now, s)
    if f is not None and obs.source is not None:
        f.evidence["address"] = obs.source  # what the block_source response blocks
    return f


def _stuffing(view: Baselines, obs: Observation, now: float, s: DetectSettings) -> Detection | None:
    r = s.stuffing
    if not obs.auth_failed or obs.reason == "azure_key_presented":
        return None
    burst = f"within {r.burst_window_s:.0f} s, whatever was presented"
    refused = obs.refused or obs.request_id
    if view.address is not None and obs.source is not None:
        failures = view.address.burst.count(now, refused)
        slow = view.address.slow.count(now, refused)
        if failures >= r.failures_per_address or slow >= r.slow_failures_per_address:
            if failures < r.failures_per_address:
                failures, burst = slow, f"within {r.window_s:.0f} s, slowly"
            f = _finding(
                "stuffing",
                "high",
                obs,
                f"{failures} different credentials refused from {obs.source} {burst}: "
                "credential stuffing.",
                failures=failures,
            )
            return Detection(**{**_fields(f), "subject": f"address:{obs.source}"})
    if view.source is not None:
        failures = view.source.burst.count(now, refused)
        if failures >= r.failures_per_network:
            return _finding(
                "stuffing",
                "high",
                obs,
                f"{failures} different credentials refused from {obs.network} {burst}: "
                "credential stuffing from many addresses.",
                failures=failures,
            )
        keys = view.source.failed_keys.count(now, obs.presented_key_id)
        if keys >= r.keys_per_network:
            return _finding(
                "stuffing",
                "high",
                obs,
                f"{keys} different keys failed authentication from {obs.network} "
                f"within {r.window_s:.0f} s: credential stuffing.",
                distinct_keys=keys,
            )
        failures = view.source.failures.count(now) + 1
        if failures >= r.flood:
            return _finding(
                "stuffing",
                "medium",
                obs,
                f"{failures} failed authentications from {obs.network} within {r.window_s:.0f} s.",
                failures=failures,
            )
    if view.presented is not None and obs.presented_key_id is not None:
        nets = view.presented.failed_networks.count(now, obs.network)
        if nets >= r.networks_per_key:
            f = _finding(
                "stuffing",
                "high",
                obs,
                f"Key {obs.presented_key_id} failed authentication from {nets} networks within "
                f"{r.window_s:.0f} s: a leaked key is being tried.",
                networks=nets,
            )
            subject = f"key:{obs.presented_key_id}"
            return Detection(**{**_fields(f), "subject": subject, "key_id": obs.presented_key_id})
    if view.client is not None and obs.client_id is not None:
        failures = view.client.count(now, refused)
        if failures >= r.failures_per_client:
            f = _finding(
                "stuffing",
                "medium",
                obs,
                f"{failures} different credentials refused for one client {burst}, from "
                "any address: a distributed stuffing tool.",
                failures=failures,
                client=obs.client_id[:200],
            )
            digest = hashlib.sha256(obs.client_id.encode()).hexdigest()[:16]
            return Detection(**{**_fields(f), "subject": f"client:{digest}"})
    return None


def enumeration(
    view: Baselines, obs: Observation, now: float, s: DetectSettings
) -> Detection | None:
    """3. Distinct unknown deployments, model listings and never-used deployments."""
    r = s.enumeration
    if view.key is None or obs.key_id is None:
        return None
    item = None
    if obs.requested is not None:
        item = "unknown:" + obs.requested
    elif obs.operation == "models":
        item = "models"
    elif obs.deployment is not None and view.key.mature():
        known = obs.deployment in view.key.deployments or (
            view.app is not None and obs.deployment in view.app.deployments
        )
        item = None if known else "deployment:" + obs.deployment
    if item is None:
        return None
    tried = view.key.probes.count(now, item)
    if tried < r.threshold:
        return None
    return _finding(
        "enumeration",
        "high",
        obs,
        f"{tried} deployments or model listings tried within {r.window_s:.0f} s: "
        "deployment enumeration.",
        tried=tried,
    )


def network(view: Baselines, obs: Observation, now: float, s: DetectSettings) -> Detection | None:
    """1. A network never seen for the key or its app, or many networks at once."""
    r = s.network
    if obs.key_id is None or obs.network is None or view.key is None:
        return None
    base = view.base
    known = obs.network in view.key.networks or (
        view.app is not None and obs.network in view.app.networks
    )
    if base is None:
        many = view.key.recent_networks.count(now, obs.network)
        if many >= r.many_networks:
            return _finding(
                "network",
                "high",
                obs,
                f"Key used from {many} networks within {r.window_s:.0f} s.",
                networks=many,
            )
        return None
    if known:
        return None
    new = view.key.new_networks.count(now, obs.network)
    severity: Severity = "high" if new >= r.new_networks_high else "medium"
    return _finding(
        "network",
        severity,
        obs,
        f"Key used from a network never seen for it or its app ({obs.network}); "
        f"{new} new network(s) within {r.window_s:.0f} s.",
        network=obs.network,
        new_networks=new,
        known_networks=len(view.key.networks),
    )


def velocity(view: Baselines, obs: Observation, now: float, s: DetectSettings) -> Detection | None:
    """2. Token rate, cost rate or concurrency far above the baseline's decaying peak."""
    if obs.key_id is None:
        return None
    v, key = s.velocity, view.key
    # a key with a history of its own is judged by it; a new one by its peers (its app's keys,
    # then its team's, then the deployment's), else by its app's history, else the defaults
    own = view.key if view.key is not None and view.key.mature() else None
    base = own if own is not None or view.peers is not None else view.base
    tokens_limit, cost_limit, conc_limit = velocity_thresholds(base, v, now, view.peers)
    tokens = (key.tokens.total(now) if key else 0.0) + obs.tokens
    judged = (
        "own history"
        if own is not None
        else f"peers: keys of {view.peers_of}"
        if view.peers is not None
        else "app"
        if base is not None
        else "defaults"
    )
    # ... and, while it has no history of its own, by what its limits and role declare
    declared = view.declared if own is None and v.declared else None
    first, tokens_judged = None, judged
    if declared is not None:
        # what the key's own app does (its keys, else its history): near the ceiling too?
        # (a team's or a deployment's keys have ceilings of their own: they say nothing)
        expected = (
            view.peers.typical(now)[0]
            if view.peers is not None and view.peers_of == f"app {obs.app}"
            else base.token_peak.current(now)
            if view.peers is None and base is not None
            else None
        )
        threshold, first = declared_thresholds(
            declared,
            v,
            tokens=tokens,
            age_s=now - key.first_seen if key is not None else 0.0,
            requests=(key.requests if key is not None else 0) + 1,
            expected=expected,
        )
        if threshold < tokens_limit:
            tokens_limit, tokens_judged = threshold, f"declared: {declared.label}"
    what, summary = None, "Usage far above this key's baseline"
    if tokens > tokens_limit:
        what = f"{tokens:.0f} tokens in {v.window_s:.0f} s (threshold {tokens_limit:.0f})"
        judged = tokens_judged
    elif first is not None and declared is not None:
        what, judged = first, f"declared: {declared.label}"
        summary = "A new key spending at its declared ceiling from the start"
    elif obs.cost is not None:
        cost = (key.cost.total(now) if key else 0.0) + obs.cost
        if cost > cost_limit:
            what = f"cost {cost:.2f} in {v.window_s:.0f} s (threshold {cost_limit:.2f})"
    if what is None and key is not None:
        concurrency = key.concurrency(now - obs.latency_ms / 1000.0)
        if concurrency > conc_limit:
            what = f"{concurrency} concurrent requests (threshold {conc_limit:.0f})"
    if what is None:
        return None
    return _finding(
        "velocity",
        "high",
        obs,
        f"{summary}: {what}.",
        tokens_in_window=tokens,
        learning=own is None,
        judged_against=judged,
        declared_tokens_per_minute=(
            round(declared.tokens_per_minute) if declared is not None else None
        ),
    )


def repetition(
    view: Baselines, obs: Observation, now: float, s: DetectSettings
) -> Detection | None:
    """10. The same prompt sent with several keys (of several apps) or from many networks
    within a window: a replay or resale farm. Only a keyed digest of the prompt is kept."""
    r, state = s.repetition, view.prompt
    if state is None or state.familiar or obs.prompt_digest is None or obs.key_id is None:
        return None
    keys = state.keys.count(now, obs.key_id)
    apps = state.apps.count(now, obs.app)
    networks = state.networks.count(now, obs.network)
    if keys >= r.distinct_keys and apps >= 2:
        what = f"with {keys} keys of {apps} apps"
    elif networks >= r.distinct_networks:
        what = f"from {networks} networks"
    else:
        return None
    f = _finding(
        "repetition",
        "high",
        obs,
        f"The same prompt was sent {what} within {r.window_s:.0f} s: a replay or resale farm.",
        keys=keys,
        apps=apps,
        networks=networks,
        prompt_digest=obs.prompt_digest,
    )
    return Detection(**{**_fields(f), "subject": f"prompt:{obs.prompt_digest}"})


def reseller(view: Baselines, obs: Observation, now: float, s: DetectSettings) -> Detection | None:
    """8. One key suddenly serving many client fingerprints (user agent + X-Stainless-*)."""
    r = s.reseller
    client = obs.client_id
    if obs.key_id is None or client is None or view.key is None:
        return None
    if view.base is not None:
        known = client in view.key.clients or (view.app is not None and client in view.app.clients)
        if known:
            return None
        new = view.key.new_clients.count(now, client)
        if new < r.new_clients:
            return None
        summary = f"{new} never-seen clients within {r.window_s:.0f} s"
    else:
        new = view.key.recent_clients.count(now, client)
        if new < r.distinct_clients:
            return None
        summary = f"{new} different clients within {r.window_s:.0f} s"
    return _finding(
        "reseller",
        "high",
        obs,
        f"One key serving many clients ({summary}): resold or shared access.",
        clients=new,
        sample=view.key.recent_clients.values(now)[-5:],
    )


def unusual_hour(view: Baselines, now: float, s: DetectSettings) -> bool:
    """Whether ``now`` falls in hours this key (or its app) is essentially never used."""
    base = view.key if view.key is not None and view.key.knows_hours() else None
    if base is None and view.app is not None and view.app.knows_hours():
        base = view.app
    return base is not None and base.hour_share(now) < s.unusual_time.min_share


def unusual_time(
    view: Baselines, obs: Observation, now: float, s: DetectSettings
) -> Detection | None:
    """9. First use after long dormancy, or repeated use in hours the key is never used."""
    r = s.unusual_time
    key = view.key
    if obs.key_id is None or key is None:
        return None
    idle = now - key.last_seen
    if key.requests >= s.learning_requests and idle >= r.dormant_days * 86400:
        return _finding(
            "unusual_time",
            "medium",
            obs,
            f"Key used again after {idle / 86400:.0f} days of dormancy.",
            dormant_days=round(idle / 86400, 1),
        )
    if not unusual_hour(view, now, s):
        return None
    count = key.unusual.count(now) + 1
    if count < r.requests:
        return None
    return _finding(
        "unusual_time",
        "low",
        obs,
        f"{count} requests within {r.window_s:.0f} s in hours this key is not used.",
        unusual_requests=count,
    )


def guardrail_hits(obs: Observation, families: tuple[str, ...]) -> list[dict[str, str]]:
    """The request-side guardrail decisions of ``obs`` in ``families``."""
    return [
        h
        for h in obs.guardrails
        if h.get("where") == "request" and h.get("family") in families and "category" in h
    ]


def guardrail_subject(obs: Observation) -> str | None:
    """Whose repeated guardrail hits count together: the key, else the (Entra) app."""
    if obs.key_id:
        return "key:" + obs.key_id
    return "app:" + obs.app if obs.app else None


def guardrail_repeat(
    view: Baselines, obs: Observation, now: float, s: DetectSettings
) -> Detection | None:
    """11. A key (or app) whose requests keep carrying secrets or prompt attacks: the
    guardrails refused or redacted each one, but someone keeps trying (a tool exfiltrating
    through the model, or a compromised app)."""
    r = s.guardrail_repeat
    hits = guardrail_hits(obs, r.families)
    subject = guardrail_subject(obs)
    if not hits or subject is None:
        return None
    count = (view.guarded.count(now) if view.guarded is not None else 0) + 1
    if count < r.threshold:
        return None
    severity: Severity = "critical" if count >= r.threshold * r.critical_multiplier else "high"
    categories = sorted({h["category"] for h in hits})[:8]
    return Detection(
        rule="guardrail_repeat",
        severity=severity,
        subject=subject,
        summary=(
            f"{count} requests within {r.window_s:.0f} s carried what the guardrails refuse "
            f"({', '.join(categories)})."
        ),
        at=obs.at,
        request_id=obs.request_id,
        key_id=obs.key_id,
        app=obs.app,
        source=obs.network or obs.source,
        evidence={
            "requests": count,
            "categories": categories,
            "actions": sorted({h.get("action", "") for h in hits}),
            "fingerprints": sorted({h.get("fingerprint", "") for h in hits})[:4],
        },
    )


def _fields(f: Detection) -> dict[str, Any]:
    return {name: getattr(f, name) for name in Detection.__dataclass_fields__}


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
}
