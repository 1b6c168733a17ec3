"""Detection settings: every rule can be switched off and tuned (``monitor.detect`` in the config).

The defaults are the thresholds the scenario library (``bench/detect``) was evaluated with; see
``docs/monitoring.md`` for what each one means and the report they produce.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from ..core.settings import Frozen

__all__ = [
    "DetectSettings",
    "NetworkRule",
    "VelocityRule",
    "EnumerationRule",
    "KeyProbeRule",
    "StuffingRule",
    "ToggleRule",
    "ResellerRule",
    "RepetitionRule",
    "BurstRule",
    "ModelMixRule",
    "SustainedRule",
    "UnusualTimeRule",
    "GuardrailRule",
    "RULES",
]

# Rule ids, in evaluation order; also the values of the ``rule`` metric label.
RULES = (
    "decoy",
    "raw_azure_key",
    "key_probe",
    "stuffing",
    "enumeration",
    "network",
    "velocity",
    "reseller",
    "repetition",
    "unusual_time",
    "guardrail_repeat",
    "burst",
    "model_mix",
    "sustained",
)


class ToggleRule(Frozen):
    enabled: bool = True


class NetworkRule(Frozen):
    """A key used from an address prefix never seen for it or its app, or from many at once."""

    enabled: bool = True
    window_s: float = Field(default=600, gt=0)
    new_networks_high: int = Field(default=3, ge=2)  # new prefixes in the window: high
    many_networks: int = Field(default=5, ge=2)  # any prefixes in the window (still learning)


class VelocityRule(Frozen):
    """Tokens, cost or concurrency far above the key's (and the app's) own peak."""

    enabled: bool = True
    window_s: float = Field(default=60, gt=0, le=600)
    peak_multiplier: float = Field(default=4.0, gt=1)
    # a key with no history (nor a mature app) against a typical key of its deployment
    new_key_multiplier: float = Field(default=2.0, gt=1)
    min_tokens: float = Field(default=20_000, ge=0)  # per window; never fire below
    min_cost: float = Field(default=2.0, ge=0)  # per window, in the cost unit of the limits
    learning_tokens: float = Field(default=300_000, gt=0)  # per window, before a baseline
    learning_cost: float = Field(default=30.0, gt=0)
    concurrency_multiplier: float = Field(default=4.0, gt=1)
    min_concurrency: int = Field(default=24, ge=1)
    learning_concurrency: int = Field(default=96, ge=1)
    peak_half_life_days: float = Field(default=7, gt=0)
    # a key without history against what its own limit rule (and role) declare
    declared: bool = True
    declared_share: float = Field(default=0.8, gt=0, le=1)  # of the declared rate ...
    declared_first_s: float = Field(default=60, gt=0, le=3600)  # ... within its first seconds
    declared_min_requests: int = Field(default=2, ge=1)  # sustained: one request is not
    declared_min_tokens: float = Field(default=1000, ge=0)  # tiny declarations: never below


class EnumerationRule(Frozen):
    """Distinct unknown deployments, model listings and never-used deployments in a window,
    or many more over a long one (an enumeration spread over days)."""

    enabled: bool = True
    window_s: float = Field(default=600, gt=0)
    threshold: int = Field(default=4, ge=2)
    slow_window_s: float = Field(default=172_800, gt=0)  # slow and low: two days ...
    slow_threshold: int = Field(default=8, ge=2)  # ... twice as many


class KeyProbeRule(Frozen):
    """Request shapes of credential resellers' key checkers (see docs/monitoring.md)."""

    enabled: bool = True
    # with an empty prompt: no answer this short is of use, only the status is
    probe_max_tokens: int = Field(default=5, ge=0)
    # ... or with a prompt this short ("hi"), from a network or client new to the key and its
    # app (a health check from the app's own hosts is left alone); 0: empty prompts only
    liveness_prompt_chars: int = Field(default=16, ge=0, le=64)
    # with an empty prompt, temperature 0 (a seed, if any, 0)
    context_probe_tokens: int = Field(default=8000, gt=0)
    suspicious_api_versions: tuple[str, ...] = ("2023-09-01-preview",)


class StuffingRule(Frozen):
    """Failed authentications, whatever was presented (a key, a token, garbage): many from one
    address, network or client within a minute; many key ids from one network, or one key id
    from many networks, within ``window_s``; many from anywhere at all; from one address, or
    with one key id from many networks, over ``day_window_s``."""

    enabled: bool = True
    window_s: float = Field(default=600, gt=0)
    keys_per_network: int = Field(default=5, ge=2)
    networks_per_key: int = Field(default=4, ge=2)
    flood: int = Field(default=300, ge=10)  # failures from one network, any credential
    burst_window_s: float = Field(default=60, gt=0, le=3600)
    failures_per_address: int = Field(default=20, ge=3)  # within burst_window_s
    slow_failures_per_address: int = Field(default=60, ge=3)  # within window_s: slow and low
    failures_per_network: int = Field(default=25, ge=3)
    failures_per_client: int = Field(default=40, ge=3)  # one client fingerprint, any source
    # every source at once: a tool scattering its attempts over networks and fingerprints
    failures_anywhere: int = Field(default=50, ge=3, le=1000)  # within burst_window_s
    slow_failures_anywhere: int = Field(default=100, ge=3, le=1000)  # within window_s
    # slower still, over a day: one address trickling, one leaked key id from network after
    # network (not those the key itself was used from: a fleet still holding a revoked key)
    day_window_s: float = Field(default=86_400, gt=0)
    day_failures_per_address: int = Field(default=100, ge=3, le=1000)
    day_networks_per_key: int = Field(default=8, ge=2, le=200)


class ResellerRule(Frozen):
    """One key suddenly serving many client fingerprints (user agent + X-Stainless-*)."""

    enabled: bool = True
    window_s: float = Field(default=3600, gt=0)
    new_clients: int = Field(default=3, ge=2)  # never-seen clients in the window (baseline)
    distinct_clients: int = Field(default=8, ge=2)  # any clients in the window (learning)


class RepetitionRule(Frozen):
    """The same prompt (a keyed digest of its normalised text, never the text) sent with
    several keys, from several apps or from many networks, or, over hours, by several apps
    from networks not their own: resale and replay farms."""

    enabled: bool = True
    window_s: float = Field(default=600, gt=0)
    distinct_keys: int = Field(default=3, ge=2)  # ... spanning at least two apps
    distinct_networks: int = Field(default=6, ge=2)  # new to the sending key and its app
    min_chars: int = Field(default=40, ge=0)  # shorter prompts ("hi") are left alone
    # slow and spread: sent by this many apps, each from a network not its own, within
    # ``slow_window_s`` (a farm pacing one prompt over hours; apps adopting a shared template
    # send it from their own hosts)
    slow_window_s: float = Field(default=21_600, gt=0)
    slow_apps: int = Field(default=3, ge=2)


class BurstRule(Frozen):
    """Short bursts far above what the key does in ``window_s``, again and again with quiet in
    between: a stolen key used a few minutes every few hours, each time under the velocity
    floors and in the key's usual hours."""

    enabled: bool = True
    window_s: float = Field(default=120, gt=0, le=3600)
    multiplier: float = Field(default=1.5, gt=1)  # x the key's decaying peak over window_s
    min_requests: int = Field(default=30, ge=2)  # within window_s: never a burst below
    quiet_s: float = Field(default=1800, gt=0)  # a burst after this long below is a new one
    bursts: int = Field(default=3, ge=2)  # separate bursts within span_s
    span_s: float = Field(default=86_400, gt=0)


class ModelMixRule(Frozen):
    """A key that suddenly spends most of its requests on a deployment its (and its app's)
    history hardly holds: a reseller serving another model with the app's key."""

    enabled: bool = True
    window_s: float = Field(default=3600, gt=0)
    rare_share: float = Field(default=0.02, gt=0, lt=1)  # of the history: a rare deployment
    shift_share: float = Field(default=0.3, gt=0, le=1)  # of the window's requests on it
    min_requests: int = Field(default=10, ge=1)  # on it within window_s


class SustainedRule(Frozen):
    """Tokens over ``window_s`` far above the key's own busiest such window (a key without a
    history of its own: above its mature app's busiest window, all its keys together): a
    stolen key kept under the velocity rule's per-minute floors for hours, with long
    completions or a steady pace."""

    enabled: bool = True
    window_s: float = Field(default=3600, ge=600, le=86_400)
    multiplier: float = Field(default=2.0, gt=1)
    # a key without a history, alone, against its whole app (all its keys): a rotated key
    # taking over the app's traffic spends about 1x; a second key on top of it, much more
    new_key_multiplier: float = Field(default=1.5, gt=1)
    min_tokens: float = Field(default=400_000, ge=0)  # per window; never fire below


class UnusualTimeRule(Frozen):
    """Use after long dormancy, or repeatedly in hours the key is never used."""

    enabled: bool = True
    dormant_days: float = Field(default=14, gt=0)
    history_days: float = Field(default=14, gt=0)  # of baseline before hours are judged
    min_share: float = Field(default=0.0005, gt=0, lt=1)  # of traffic in this hour (±1 h)
    requests: int = Field(default=3, ge=1)  # unusual-hour requests within window_s
    window_s: float = Field(default=3600, gt=0)
    half_life_days: float = Field(default=28, gt=0)


class GuardrailRule(Frozen):
    """One key (or Entra app) whose requests keep carrying what the guardrails look for in
    ``families`` (secrets, prompt attacks), whatever the action was: ``threshold`` such
    requests within ``window_s`` is an incident (high); ``critical_multiplier`` times that,
    critical."""

    enabled: bool = True
    window_s: float = Field(default=600, gt=0)
    threshold: int = Field(default=5, ge=2)
    critical_multiplier: int = Field(default=4, ge=2)
    families: tuple[str, ...] = ("secret", "attack")


class DetectSettings(Frozen):
    enabled: bool = True
    # Decoy (honeytoken) keys: any use is an incident and the request is refused.
    decoy_key_ids: tuple[str, ...] = ()
    decoy_apps: tuple[str, ...] = ()
    ipv4_prefix: int = Field(default=24, ge=8, le=32)
    ipv6_prefix: int = Field(default=48, ge=16, le=128)
    # failed authentications are also counted per this wider IPv6 prefix (a provider's
    # allocation), against ``stuffing.failures_per_network``: a tool rotating its /48s
    ipv6_stuffing_prefix: int = Field(default=32, ge=16, le=128)
    learning_requests: int = Field(default=200, ge=1)
    min_peers: int = Field(default=5, ge=1)  # mature keys of a deployment before they judge
    # mature keys of an app (or of a team's apps) before they judge a new key of it
    min_app_peers: int = Field(default=1, ge=1)
    learning_days: float = Field(default=3, ge=0)
    cooldown_s: float = Field(default=3600, ge=0)  # one incident per rule and subject
    max_subjects: int = Field(default=50_000, ge=100)  # per kind of state (keys, sources, ...)
    persist_interval_s: float = Field(default=60, gt=0)
    decoy: ToggleRule = ToggleRule()
    raw_azure_key: ToggleRule = ToggleRule()
    key_probe: KeyProbeRule = KeyProbeRule()
    stuffing: StuffingRule = StuffingRule()
    enumeration: EnumerationRule = EnumerationRule()
    network: NetworkRule = NetworkRule()
    velocity: VelocityRule = VelocityRule()
    reseller: ResellerRule = ResellerRule()
    repetition: RepetitionRule = RepetitionRule()
    unusual_time: UnusualTimeRule = UnusualTimeRule()
    guardrail_repeat: GuardrailRule = GuardrailRule()
    burst: BurstRule = BurstRule()
    model_mix: ModelMixRule = ModelMixRule()
    sustained: SustainedRule = SustainedRule()

    @field_validator("decoy_key_ids")
    @classmethod
    def _key_ids(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for key_id in v:
            if len(key_id) != 12 or not key_id.isalnum():
                raise ValueError(f"decoy key id {key_id[:20]!r} is not a 12-character key id")
        return v
