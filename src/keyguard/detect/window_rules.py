"""The rules that count within a window: credential stuffing (failed authentications per
address, network, presented key and client), deployment enumeration, the same prompt from many
keys or networks, and a key whose requests keep tripping the guardrails."""

from __future__ import annotations

import hashlib

from ..core.observation import Observation, network_of
from ..events import Severity
from .detection import Baselines, Detection, detection_fields, finding, foreign_network
from .settings import DetectSettings

__all__ = [
    "enumeration",
    "guardrail_hits",
    "guardrail_repeat",
    "guardrail_subject",
    "repetition",
    "stuffing",
]


def stuffing(view: Baselines, obs: Observation, now: float, s: DetectSettings) -> Detection | None:
    """5. Failed authentications: many key ids from one network, one key id from many
    networks, or a flood of failures from one network."""
    if obs.status != 401:  # not obs.auth_failed: most requests, at once
        return None
    f = _stuffing(view, obs, now, s)
    if (
        f is not None
        and obs.source is not None
        and (f.subject != _ANYWHERE or f.evidence["tried_here"] > 1)
    ):
        f.evidence["address"] = obs.source  # what the block_source response blocks
    return f


def _stuffing(view: Baselines, obs: Observation, now: float, s: DetectSettings) -> Detection | None:
    r = s.stuffing
    if not obs.auth_failed:
        return None
    burst = f"within {r.burst_window_s:.0f} s, whatever was presented"
    refused = obs.refused or obs.request_id
    address = view.address
    if address is not None and obs.source is not None:
        failures = address.burst.count(now, refused)
        slow = address.slow.count(now, refused)
        day = address.day.count(now, refused) if address.day is not None else 0
        if (
            failures >= r.failures_per_address
            or slow >= r.slow_failures_per_address
            or day >= r.day_failures_per_address
        ):
            if failures < r.failures_per_address and slow >= r.slow_failures_per_address:
                failures, burst = slow, f"within {r.window_s:.0f} s, slowly"
            elif failures < r.failures_per_address:
                failures, burst = day, f"within {r.day_window_s / 3600:.0f} h, a trickle"
            f = finding(
                "stuffing",
                "high",
                obs,
                f"{failures} different credentials refused from {obs.source} {burst}: "
                "credential stuffing.",
                failures=failures,
            )
            return Detection(**{**detection_fields(f), "subject": f"address:{obs.source}"})
    if view.source is not None:
        failures = view.source.burst.count(now, refused)
        if failures >= r.failures_per_network:
            return finding(
                "stuffing",
                "high",
                obs,
                f"{failures} different credentials refused from {obs.network} {burst}: "
                "credential stuffing from many addresses.",
                failures=failures,
            )
        keys = view.source.failed_keys.count(now, obs.presented_key_id)
        if keys >= r.keys_per_network:
            return finding(
                "stuffing",
                "high",
                obs,
                f"{keys} different keys failed authentication from {obs.network} "
                f"within {r.window_s:.0f} s: credential stuffing.",
                distinct_keys=keys,
            )
        failures = view.source.failures.count(now) + 1
        if failures >= r.flood:
            return finding(
                "stuffing",
                "medium",
                obs,
                f"{failures} failed authentications from {obs.network} within {r.window_s:.0f} s.",
                failures=failures,
            )
    if view.wide is not None:
        failures = view.wide.burst.count(now, refused)
        if failures >= r.failures_per_network:
            prefix = network_of(obs.source, 32, s.ipv6_stuffing_prefix)
            f = finding(
                "stuffing",
                "high",
                obs,
                f"{failures} different credentials refused from {prefix} {burst}: credential "
                "stuffing from addresses rotating across its networks.",
                failures=failures,
                prefix=prefix,
            )
            return Detection(**{**detection_fields(f), "subject": f"source:{prefix}"})
    presented = view.presented
    if presented is not None and obs.presented_key_id is not None and not view.presented_own:
        nets, within, needed = (
            presented.failed_networks.count(now, obs.network),
            r.window_s,
            r.networks_per_key,
        )
        if nets < needed:
            nets, within = presented.day_networks.count(now, obs.network), r.day_window_s
            needed = r.day_networks_per_key
        if nets >= needed:
            f = finding(
                "stuffing",
                "high",
                obs,
                f"Key {obs.presented_key_id} failed authentication from {nets} networks within "
                f"{within:.0f} s: a leaked key is being tried.",
                networks=nets,
            )
            subject = f"key:{obs.presented_key_id}"
            return Detection(
                **{**detection_fields(f), "subject": subject, "key_id": obs.presented_key_id}
            )
    if view.client is not None and obs.client_id is not None:
        failures = view.client.count(now, refused)
        if failures >= r.failures_per_client:
            f = finding(
                "stuffing",
                "medium",
                obs,
                f"{failures} different credentials refused for one client {burst}, from "
                "any address: a distributed stuffing tool.",
                failures=failures,
                client=obs.client_id[:200],
            )
            digest = hashlib.sha256(obs.client_id.encode()).hexdigest()[:16]
            return Detection(**{**detection_fields(f), "subject": f"client:{digest}"})
    return _anywhere(view, obs, now, s)


def _anywhere(view: Baselines, obs: Observation, now: float, s: DetectSettings) -> Detection | None:
    """Many credentials refused from every source at once: a tool giving each attempt its own
    address, network and fingerprint, so that none of them counts more than one."""
    r, anywhere = s.stuffing, view.anywhere
    if anywhere is None or view.presented_own:  # a revoked key's own fleet: not stuffing
        return None
    refused = obs.refused or obs.request_id
    failures, within = anywhere.burst.count(now, refused), r.burst_window_s
    if failures < r.failures_anywhere:
        failures, within = anywhere.slow.count(now, refused), r.window_s
        if failures < r.slow_failures_anywhere:
            return None
    f = finding(
        "stuffing",
        "high",
        obs,
        f"{failures} different credentials refused within {within:.0f} s from sources that "
        "each tried few: credential stuffing scattered over networks and clients.",
        failures=failures,
        # an address that tried one credential is not blocked: it stops nothing, and the
        # address may be an office's or a region's, shared with a user who mistyped a key
        tried_here=view.address.slow.count(now, refused) if view.address is not None else 1,
    )
    return Detection(**{**detection_fields(f), "subject": _ANYWHERE})


_ANYWHERE = "sources:any"  # the subject of stuffing from anywhere


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
    tried, within = view.key.probes.count(now, item), f"{r.window_s:.0f} s"
    if tried < r.threshold:
        # slow and low: one name every few hours, over days
        tried, within = view.key.slow_probes.count(now, item), f"{r.slow_window_s / 3600:.0f} h"
        if tried < r.slow_threshold:
            return None
    return finding(
        "enumeration",
        "high",
        obs,
        f"{tried} deployments or model listings tried within {within}: deployment enumeration.",
        tried=tried,
    )


def repetition(
    view: Baselines, obs: Observation, now: float, s: DetectSettings
) -> Detection | None:
    """10. The same prompt sent with several keys (of several apps; the apps of one team are
    one) or from many networks new to its keys and apps within a window, or by several apps
    each from a network not its own over hours: a replay or resale farm. Only a keyed digest
    of the prompt is kept."""
    r, state = s.repetition, view.prompt
    if state is None or state.familiar or obs.prompt_digest is None or obs.key_id is None:
        return None
    keys = state.keys.count(now, obs.key_id)
    apps = state.apps.count(now, view.sender)  # apps of one team count as one
    foreign = foreign_network(view, obs.network, now)
    networks = state.networks.count(now, foreign)
    within = f"{r.window_s:.0f} s"
    if keys >= r.distinct_keys and apps >= 2:
        what = f"with {keys} keys of {apps} apps"
    elif networks >= r.distinct_networks:
        what = f"from {networks} networks"
    else:
        spread = state.foreign_apps.count(now, view.sender if foreign is not None else None)
        if spread < r.slow_apps:
            return None
        what = f"by {spread} apps from networks not their own"
        within = f"{r.slow_window_s / 3600:.0f} h"
    f = finding(
        "repetition",
        "high",
        obs,
        f"The same prompt was sent {what} within {within}: a replay or resale farm.",
        keys=keys,
        apps=apps,
        networks=networks,
        prompt_digest=obs.prompt_digest,
    )
    return Detection(**{**detection_fields(f), "subject": f"prompt:{obs.prompt_digest}"})


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
    if not obs.guardrails:  # most requests, at once
        return None
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
