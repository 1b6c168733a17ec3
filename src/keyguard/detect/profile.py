"""Baselines: what is usual for a key and for an app; updated per request (what is kept per
network, address, presented key id, prompt and peer group is :mod:`.states`).

A :class:`Profile` (one per key and one per app) remembers, with bounded memory:

* the networks (address prefixes), client fingerprints, deployments and api-versions it used;
* when it is used: a 168-bin hour-of-week histogram with exponentially decaying weights;
* how hard it is used: decaying peaks of its token rate, cost rate and concurrency over the
  velocity window, fed only by traffic that was not itself abnormal, of its tokens over the
  sustained window (an hour), and of its requests over the burst window, fed only away from a
  burst;
* which deployments it spends its requests on (weighted as the hours);
* short windows the rules read (networks and clients seen lately, enumeration attempts, the
  bursts of the last day, its requests of the last hour on deployments rare in its history).

:func:`update_profile` folds one observation in *after* the rules have judged it, so a rule
always compares a request with what came before it. The long-term part of a profile survives
restarts (:meth:`Profile.to_json` / :meth:`Profile.from_json`); the short windows do not.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..core.observation import Observation
from .settings import BurstRule, DetectSettings, SustainedRule, VelocityRule
from .states import PeerGroup
from .windows import Events, Peak, Rate, Recent

__all__ = [
    "Profile",
    "update_profile",
    "hour_of_week",
    "velocity_thresholds",
    "burst_threshold",
    "sustained_threshold",
]

_WEEK_HOURS = 168
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)
# at most this many networks, clients, deployments and api-versions are remembered a profile
_NETWORKS, _CLIENTS, _DEPLOYMENTS, _API_VERSIONS = 256, 128, 64, 32
_REMEMBERED_S = 600.0  # last-seen times are kept to ten minutes
_SLOW_GROWTH = 1.0015  # per velocity bucket while traffic stays abnormal (~x2 in 40 min)
_RECENT_DEPLOYMENTS = 16  # deployments whose requests of the last model_mix window are kept


def hour_of_week(now: float) -> int:
    """0 = Monday 00:00-01:00 UTC ... 167 = Sunday 23:00-24:00 UTC."""
    hours = int(now // 3600)
    return ((hours // 24 + _EPOCH_WEEKDAY) % 7) * 24 + hours % 24


def _remember(seen: dict[str, float], value: str, now: float, cap: int) -> None:
    """Note ``value`` as seen at ``now`` (the caller checked it was not seen within
    ``_REMEMBERED_S``: cheaper than reordering each time); the oldest beyond ``cap`` go."""
    seen.pop(value, None)
    seen[value] = now
    if len(seen) > cap:
        del seen[next(iter(seen))]


@dataclass(slots=True)
class Profile:
    settings: DetectSettings
    first_seen: float
    last_seen: float = 0.0
    requests: int = 0
    networks: dict[str, float] = field(default_factory=dict)
    clients: dict[str, float] = field(default_factory=dict)
    deployments: dict[str, float] = field(default_factory=dict)
    api_versions: dict[str, float] = field(default_factory=dict)
    hours: list[float] = field(default_factory=lambda: [0.0] * _WEEK_HOURS)
    hours_origin: float = 0.0  # weights are 2 ** ((t - origin) / half-life)
    # requests per deployment, weighted as the hours (the model_mix rule's history)
    mix: dict[str, float] = field(default_factory=dict)
    token_peak: Peak = field(init=False)
    cost_peak: Peak = field(init=False)
    concurrency_peak: Peak = field(init=False)
    burst_peak: Peak = field(init=False)  # requests over burst.window_s, decaying
    # short windows (not persisted)
    tokens: Rate = field(init=False)
    cost: Rate = field(init=False)
    recent_networks: Recent = field(init=False)
    new_networks: Recent = field(init=False)
    recent_clients: Recent = field(init=False)
    new_clients: Recent = field(init=False)
    probes: Recent = field(init=False)
    slow_probes: Recent = field(init=False)
    unusual: Events = field(init=False)
    burst_requests: Rate = field(init=False)  # requests within burst.window_s
    bursts: Events = field(init=False)  # when each burst (of the burst rule) began
    last_hot: float = -1e18  # the last request of a burst
    burst_limit: float = 0.0  # burst_threshold, worked out at each burst bucket
    burst_bucket: int = -1
    burst_pending: deque[tuple[float, float]] = field(default_factory=deque)
    # tokens within sustained.window_s, a velocity bucket at a time, and their decaying peak
    hour_tokens: Rate = field(init=False)  # its buckets' sums, each once it has ended
    unfolded: float = 0.0  # tokens of the window's current bucket, not yet in ``hour_tokens``
    hour_next: float = -math.inf  # when the window's current bucket ends
    hour_room: float = 0.0  # what the current bucket may add before the rule looks closer
    hour_peak: Peak = field(init=False)
    hour_limit: float = 0.0  # sustained_threshold (a key still learning: the floor), a bucket
    hour_pending: deque[tuple[float, float]] = field(default_factory=deque)
    recent_requests: Rate = field(init=False)  # within model_mix.window_s ...
    recent_mix: dict[str, Rate] = field(default_factory=dict)  # ... per deployment
    ends: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    hours_total: float = 0.0
    is_mature: bool = False  # once learnt, a baseline stays learnt
    last_bucket: int = -1
    noted_bucket: int = -2  # the bucket in which its peaks were last given to its peer groups
    bucket_concurrency: int = 0
    pending: deque[tuple[float, tuple[float, float, float]]] = field(default_factory=deque)
    hours_half_life: float = field(init=False)  # seconds, from the settings

    def __post_init__(self) -> None:
        s = self.settings
        self.hours_half_life = s.unusual_time.half_life_days * 86400
        half_life = s.velocity.peak_half_life_days * 86400
        self.token_peak = Peak(half_life)
        self.cost_peak = Peak(half_life)
        self.concurrency_peak = Peak(half_life)
        self.burst_peak = Peak(half_life)
        self.hour_peak = Peak(half_life)
        self.hour_tokens = Rate(s.sustained.window_s)
        self.hour_limit = self.hour_room = s.sustained.min_tokens
        self.tokens = Rate(s.velocity.window_s)
        self.cost = Rate(s.velocity.window_s)
        self.recent_networks = Recent(s.network.window_s)
        self.new_networks = Recent(s.network.window_s)
        self.recent_clients = Recent(s.reseller.window_s)
        self.new_clients = Recent(s.reseller.window_s)
        self.probes = Recent(s.enumeration.window_s)
        self.slow_probes = Recent(s.enumeration.slow_window_s)
        self.unusual = Events(s.unusual_time.window_s)
        self.burst_requests = Rate(s.burst.window_s)
        self.bursts = Events(s.burst.span_s, cap=64)
        self.burst_limit = float(s.burst.min_requests)
        self.recent_requests = Rate(s.model_mix.window_s)
        if not self.hours_origin:
            self.hours_origin = self.first_seen
        self.hours_total = sum(self.hours)

    def mature(self) -> bool:
        if self.is_mature:
            return True
        s = self.settings
        self.is_mature = (
            self.requests >= s.learning_requests
            and self.last_seen - self.first_seen >= s.learning_days * 86400
        )
        return self.is_mature

    def knows_hours(self) -> bool:
        span = self.last_seen - self.first_seen
        return self.mature() and span >= self.settings.unusual_time.history_days * 86400

    def hour_share(self, now: float) -> float:
        """The share of this profile's traffic in ``now``'s hour of the week, +-1 hour."""
        total = self.hours_total
        if total <= 0:
            return 1.0
        h = hour_of_week(now)
        near = self.hours[h - 1] + self.hours[h] + self.hours[(h + 1) % _WEEK_HOURS]
        return near / (3 * total)

    def mix_share(self, deployment: str) -> float:
        """The share of this profile's requests (weighted as the hours) on ``deployment``."""
        total = self.hours_total
        return self.mix.get(deployment, 0.0) / total if total > 0 else 0.0

    def concurrency(self, start: float) -> int:
        """Requests of this profile still running when a request started at ``start``: the
        last 256 ends (kept in order) that came after it, plus itself."""
        ends = self.ends
        return 1 + len(ends) - bisect_right(ends, start)

    def ended(self, at: float) -> None:
        """Note a request's end (kept sorted: a clock step back counts as no time passing)."""
        ends = self.ends
        ends.append(at if not ends or at >= ends[-1] else ends[-1])

    # -- persistence -----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "requests": self.requests,
            "networks": self.networks,
            "clients": self.clients,
            "deployments": self.deployments,
            "api_versions": self.api_versions,
            "hours": self.hours,
            "hours_origin": self.hours_origin,
            "mix": self.mix,
            "peaks": [[p.value, p.at] for p in self._peaks()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], settings: DetectSettings) -> Profile:
        first_seen, last_seen = _instant(data["first_seen"]), _instant(data["last_seen"])
        profile = cls(
            settings=settings,
            first_seen=first_seen,
            last_seen=last_seen,
            requests=max(0, int(data["requests"])),
            networks=_seen(data.get("networks", {}), _NETWORKS),
            clients=_seen(data.get("clients", {}), _CLIENTS),
            deployments=_seen(data.get("deployments", {}), _DEPLOYMENTS),
            api_versions=_seen(data.get("api_versions", {}), _API_VERSIONS),
            hours=_hours(data.get("hours", ())),
            hours_origin=_instant(data.get("hours_origin", first_seen)),
            mix={str(k): _weight(v) for k, v in list(data.get("mix", {}).items())[:_DEPLOYMENTS]},
        )
        if "mix" not in data and profile.deployments:  # saved before the mix was kept:
            share = profile.hours_total / len(profile.deployments)  # none of its is rare
            profile.mix = dict.fromkeys(profile.deployments, share)
        peaks = data.get("peaks", [])
        for peak, saved in zip(profile._peaks(), peaks, strict=False):
            value, at = float(saved[0]), float(saved[1])
            if 0 <= value < math.inf and math.isfinite(at):  # NaN or infinite: not kept
                peak.value, peak.at = value, at
        return profile

    def _peaks(self) -> tuple[Peak, ...]:
        """The peaks saved, in their saved order (a new one goes last: older saves load)."""
        return (
            self.token_peak,
            self.cost_peak,
            self.concurrency_peak,
            self.burst_peak,
            self.hour_peak,
        )


def _instant(value: Any) -> float:
    """A saved time; a profile whose times are not finite numbers is not loaded (raises
    :class:`ValueError`: whoever can write the store must not make a rule fail or go blind
    for a key at every request)."""
    at = float(value)
    if not math.isfinite(at):
        raise ValueError("a saved baseline's time is not a finite number")
    return at


def _weight(value: Any) -> float:
    """A saved weight (an hour of the week's, a deployment's share); one that is not a finite
    non-negative number counts as none."""
    weight = float(value)
    return weight if 0.0 <= weight < math.inf else 0.0


def _hours(saved: Any) -> list[float]:
    """A saved week of hourly weights: 168 of them, a missing one as none."""
    hours = [_weight(x) for x in list(saved)[:_WEEK_HOURS]]
    return hours + [0.0] * (_WEEK_HOURS - len(hours))


def _seen(saved: Any, cap: int) -> dict[str, float]:
    """A saved map of names to when they were last seen, oldest first as kept: without the
    entries whose time is not a finite number, and at most the ``cap`` newest (what
    :func:`_remember` keeps; a map written larger is cut on load)."""
    out: dict[str, float] = {}
    for name, at in list(dict(saved).items())[-cap:]:
        when = float(at)
        if math.isfinite(when):
            out[str(name)] = when
    return out


def velocity_thresholds(
    base: Profile | None, v: VelocityRule, now: float, peers: PeerGroup | None = None
) -> tuple[float, float, float]:
    """(tokens, cost, concurrency) above which the velocity rule fires against ``base``; with
    no mature baseline, against ``peers`` (the mature keys of its app, team or deployment)
    when there are."""
    if base is None or not base.mature():
        if peers is not None:
            tokens, cost = peers.typical(now)
            return (
                max(v.new_key_multiplier * tokens, v.min_tokens),
                max(v.new_key_multiplier * cost, v.min_cost),
                float(v.learning_concurrency),
            )
        return v.learning_tokens, v.learning_cost, float(v.learning_concurrency)
    return (
        max(v.peak_multiplier * base.token_peak.current(now), v.min_tokens),
        max(v.peak_multiplier * base.cost_peak.current(now), v.min_cost),
        max(v.concurrency_multiplier * base.concurrency_peak.current(now), v.min_concurrency),
    )


def sustained_threshold(
    p: Profile, r: SustainedRule, now: float, multiplier: float | None = None
) -> float:
    """Tokens within ``r.window_s`` above which traffic is far above ``p``'s busiest such
    window (a key's own; or its app's, all its keys together, with ``multiplier``)."""
    return max((multiplier or r.multiplier) * p.hour_peak.current(now), r.min_tokens)


def _fold_hour(p: Profile, now: float) -> None:
    """When a bucket of the sustained window ends: move its tokens into the window, note the
    window's total, and offer to the decaying peak what was noted a full window ago (a value
    above the threshold only nudges the peak up slowly). A key still learning is held to the
    floor alone: its rule judges it by its app."""
    r, rate = p.settings.sustained, p.hour_tokens
    width = rate.width
    if p.hour_next > -math.inf:
        if p.unfolded:
            rate.add(p.hour_next - width, p.unfolded)
            p.unfolded = 0.0
        p.hour_pending.append((now, rate.total(now)))
    p.hour_next = (now // width + 1) * width
    pending, peak, mature = p.hour_pending, p.hour_peak, p.mature()
    while pending and pending[0][0] <= now - r.window_s:
        value = pending.popleft()[1]
        _feed(peak, now, value, abnormal=mature and value > p.hour_limit)
    p.hour_limit = sustained_threshold(p, r, now) if mature else r.min_tokens
    p.hour_room = p.hour_limit - rate.most()


def _feed(peak: Peak, now: float, value: float, *, abnormal: bool) -> None:
    """Offer ``value``, noted a window ago, to a decaying peak; when it was abnormal (above a
    mature baseline's threshold, or within a burst) the peak only grows by
    :data:`_SLOW_GROWTH` instead: an attack must not become the norm."""
    peak.offer(now, peak.current(now) * _SLOW_GROWTH if abnormal else value)


def burst_threshold(p: Profile, r: BurstRule, now: float) -> float:
    """Requests within ``r.window_s`` above which a mature key is in a burst."""
    return max(r.multiplier * p.burst_peak.current(now), float(r.min_requests))


def _fold_burst_peak(p: Profile, now: float, bucket: int) -> None:
    """At each burst bucket, note the requests of the window, and offer to the decaying peak
    what was noted a full window ago, unless a burst came within a window of it (its ramp-up
    and its tail included): then the peak grows slowly, as the velocity peaks do."""
    r = p.settings.burst
    if p.burst_bucket >= 0:
        p.burst_pending.append((now, p.burst_requests.total(now)))
    p.burst_bucket = bucket
    pending, peak = p.burst_pending, p.burst_peak
    while pending and pending[0][0] <= now - r.window_s:
        noted_at, value = pending.popleft()
        _feed(peak, now, value, abnormal=p.last_hot >= noted_at - r.window_s)
    p.burst_limit = burst_threshold(p, r, now)  # the peak decays little within a bucket


def _burst(p: Profile, now: float) -> None:
    """Count the request in the burst windows; note a burst when it is one (a mature key)."""
    r, rate = p.settings.burst, p.burst_requests
    bucket = int(now // rate.width)
    if bucket != p.burst_bucket:
        _fold_burst_peak(p, now, bucket)
    if rate.most() + 1 > p.burst_limit and p.mature() and rate.total(now) + 1 > p.burst_limit:
        if now - p.last_hot > r.quiet_s:
            p.bursts.add(now)
        p.last_hot = now
    rate.add(now, 1.0)


def _mix(p: Profile, deployment: str, now: float) -> None:
    """Count a request on ``deployment`` within the model_mix window."""
    recent = p.recent_mix.get(deployment)
    if recent is None:
        if len(p.recent_mix) >= _RECENT_DEPLOYMENTS:
            del p.recent_mix[next(iter(p.recent_mix))]
        recent = p.recent_mix[deployment] = Rate(p.settings.model_mix.window_s)
    recent.add(now, 1.0)


def _fold_peaks(p: Profile, now: float) -> None:
    """At each velocity bucket, note the window's totals and the bucket's highest concurrency,
    and offer to the decaying peaks what was noted a full window ago. The delay keeps a surge
    from raising its own threshold while it ramps up; a value above the threshold only nudges
    its peak up slowly (an attack must not become the norm)."""
    bucket = p.tokens.bucket(now)
    if bucket == p.last_bucket:
        return
    if now >= p.hour_next:  # a bucket of the sustained window ended too
        _fold_hour(p, now)
    if p.last_bucket >= 0:
        noted = (p.tokens.total(now), p.cost.total(now), float(p.bucket_concurrency))
        p.pending.append((now, noted))
    p.last_bucket = bucket
    p.bucket_concurrency = 0
    pending, v = p.pending, p.settings.velocity
    if not pending or pending[0][0] > now - v.window_s:
        return
    limits = velocity_thresholds(p, v, now)
    mature = p.mature()
    peaks = (p.token_peak, p.cost_peak, p.concurrency_peak)
    while pending and pending[0][0] <= now - v.window_s:
        for peak, value, limit in zip(peaks, pending.popleft()[1], limits, strict=True):
            _feed(peak, now, value, abnormal=mature and value > limit)


def _probed(p: Profile, item: str, now: float) -> None:
    """Note a deployment tried (unknown, listed or never used) for the enumeration rule."""
    p.probes.add(item, now)
    p.slow_probes.add(item, now)


def update_profile(
    p: Profile,
    obs: Observation,
    now: float,
    unusual_hour: bool,
    *,
    client: str | None,
    hour: int,
    windows: bool = True,
) -> None:
    """Fold a successful or failed-but-authenticated request into the profile. ``client``
    and ``hour`` are the request's client fingerprint (:attr:`Observation.client_id`) and
    hour of the week (:func:`hour_of_week`), worked out once for the key and its app.
    ``windows``: also the short windows the rules read (only keys' are read; apps skip
    them)."""
    if int(now // p.tokens.width) != p.last_bucket:  # p.tokens.bucket(now): a new bucket
        _fold_peaks(p, now)
    if not p.requests or now < p.first_seen:
        p.first_seen = min(p.first_seen, now)
    p.requests += 1
    if now > p.last_seen:
        p.last_seen = now
    network = obs.network
    if network is not None:
        seen = p.networks
        last = seen.get(network)
        if windows:
            if last is None:
                p.new_networks.add(network, now)
            p.recent_networks.add(network, now)
        if last is None or now - last >= _REMEMBERED_S:
            _remember(seen, network, now, _NETWORKS)
    if client is not None:
        seen = p.clients
        last = seen.get(client)
        if windows:
            if last is None:
                p.new_clients.add(client, now)
            p.recent_clients.add(client, now)
        if last is None or now - last >= _REMEMBERED_S:
            _remember(seen, client, now, _CLIENTS)
    deployment = obs.deployment
    if deployment is not None:
        seen = p.deployments
        last = seen.get(deployment)
        if windows and last is None and p.mature():
            _probed(p, "deployment:" + deployment, now)
        if last is None or now - last >= _REMEMBERED_S:
            _remember(seen, deployment, now, _DEPLOYMENTS)
        if windows and p.mix.get(deployment, 0.0) < p.settings.model_mix.rare_share * (
            p.hours_total
        ):  # only a deployment rare in its history is counted (the model_mix rule's)
            _mix(p, deployment, now)
    if windows:
        p.recent_requests.add(now, 1.0)
        _burst(p, now)
    if windows and obs.requested is not None:
        _probed(p, "unknown:" + obs.requested, now)
    if windows and obs.operation == "models":
        _probed(p, "models", now)
    version = obs.api_version
    if version is not None:
        last = p.api_versions.get(version)
        if last is None or now - last >= _REMEMBERED_S:
            _remember(p.api_versions, version, now, _API_VERSIONS)
    # hour-of-week, with weights growing 2x per half-life (decay without touching 168 bins)
    exponent = (now - p.hours_origin) / p.hours_half_life
    if exponent > 500:  # rebase before the weights overflow
        p.hours = [h * 2.0**-exponent for h in p.hours]
        p.mix = {name: w * 2.0**-exponent for name, w in p.mix.items()}
        p.hours_origin, exponent = now, 0.0
        p.hours_total = sum(p.hours)
    # an hour that is unusual now is learnt ten times slower (an intruder's hours must not
    # become usual after three requests)
    weight = 2.0**exponent * (0.1 if unusual_hour else 1.0)
    p.hours[hour] += weight
    p.hours_total += weight
    if deployment is not None:
        mix = p.mix
        mix[deployment] = mix.get(deployment, 0.0) + weight
        if len(mix) > _DEPLOYMENTS:  # the least used goes
            del mix[min(mix, key=mix.__getitem__)]
    if unusual_hour and windows:
        p.unusual.add(now)
    tokens = float(obs.prompt_tokens + obs.completion_tokens)
    p.tokens.add(now, tokens)
    p.unfolded += tokens
    if obs.cost is not None:
        p.cost.add(now, obs.cost)
    running = p.concurrency(now - obs.latency_ms / 1000)
    if running > p.bucket_concurrency:
        p.bucket_concurrency = running
    p.ended(now)
