"""The rules one request decides: a decoy key used, a raw Azure key presented, a key checker's
probe. :func:`probe_signature` needs nothing but the request, so the gateway refuses a probe
before it is served (:mod:`keyguard.respond.blocks`)."""

from __future__ import annotations

from ..core.observation import Observation
from ..events import Severity
from .detection import Baselines, Detection, detection_fields, finding
from .profile import Profile
from .settings import DetectSettings, KeyProbeRule

__all__ = ["PROBED_OPERATIONS", "decoy", "key_probe", "probe_signature", "raw_azure_key"]


def decoy(view: Baselines, obs: Observation, now: float, s: DetectSettings) -> Detection | None:
    """6. Any use of a decoy key (or a key of a decoy app), valid or not."""
    hit = obs.key_id in s.decoy_key_ids or obs.presented_key_id in s.decoy_key_ids
    if not hit and not (obs.app is not None and obs.app in s.decoy_apps):
        return None
    f = finding(
        "decoy",
        "critical",
        obs,
        "A decoy key was used: whoever holds it took it from where it was planted.",
        presented_key_id=obs.presented_key_id,
        user_agent=obs.user_agent,
        status=obs.status,
    )
    key = obs.key_id or obs.presented_key_id
    return Detection(**{**detection_fields(f), "subject": f"key:{key}", "key_id": key})


def raw_azure_key(
    view: Baselines, obs: Observation, now: float, s: DetectSettings
) -> Detection | None:
    """7. A raw Azure OpenAI key presented to the gateway."""
    if obs.reason != "azure_key_presented":
        return None
    return finding(
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
    refuse it before it is served): an empty prompt with a few tokens at most, or an empty
    context-size probe at temperature 0 (with seed 0, or none: a checker leaving the seed out
    sends the same probe)."""
    if not empty_prompt or max_tokens is None:
        return None
    if max_tokens <= r.probe_max_tokens:
        return f"validity probe: empty prompt, max_tokens {max_tokens}"
    if max_tokens >= r.context_probe_tokens and temperature == 0 and not seed:
        return f"context-size probe: empty prompt, max_tokens {max_tokens}"
    return None


def _liveness(view: Baselines, obs: Observation, r: KeyProbeRule) -> str | None:
    """A key checker's liveness probe: a short prompt ("hi") with ``max_tokens`` <= 1, from a
    network and a client both new to the key and its app. The app's own health check ("ping",
    1 token) comes from its hosts, or at least with its client (a new region), and is left
    alone (a new network alone is the network rule's); so is a key whose own baseline and its
    app's are still being learnt (a developer trying a key made this morning, from a notebook
    and then from a laptop: nothing says whose it is yet)."""
    chars, limit = obs.prompt_chars, obs.max_tokens
    if not chars or chars > r.liveness_prompt_chars or limit is None:
        return None
    key, app = view.key, view.app
    if limit > r.probe_max_tokens or not any(p is not None and p.mature() for p in (key, app)):
        return None
    network, client = obs.network, obs.client_id
    if network is None or client is None or _knows(key, app, "networks", network):
        return None
    if _knows(key, app, "clients", client):
        return None
    return f"liveness probe: {chars}-character prompt, max_tokens {limit}, new network and client"


def _knows(key: Profile | None, app: Profile | None, what: str, value: str) -> bool:
    return any(p is not None and value in getattr(p, what) for p in (key, app))


def key_probe(view: Baselines, obs: Observation, now: float, s: DetectSettings) -> Detection | None:
    """4. Credential resellers' key checkers: a 1-token empty prompt, an empty context-size
    probe at temperature 0 and seed 0, an api-version such checkers use, or a 1-token short
    prompt from a network or client the key never used."""
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
        kind = _liveness(view, obs, r)
    if kind is None:
        return None
    return finding(
        "key_probe",
        severity,
        obs,
        f"Key-checker request ({kind}): the key is probably being validated for resale.",
        api_version=obs.api_version,
        max_tokens=obs.max_tokens,
        user_agent=obs.user_agent,
    )
