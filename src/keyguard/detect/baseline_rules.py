"""The rules that judge a request against a baseline (the key's own once learnt, else its
peers', its app's or the defaults): a network never seen, usage far above the decaying peak or
what a new key declares, many never-seen clients, use after dormancy or in hours never used,
bursts far above the key's busiest minutes again and again, a shift to a deployment its history
hardly holds."""

from __future__ import annotations

from ..core.observation import Observation
from ..events import Severity
from .declared import declared_thresholds
from .detection import Baselines, Detection, finding
from .profile import sustained_threshold, velocity_thresholds
from .settings import DetectSettings

__all__ = [
    "burst",
    "model_mix",
    "network",
    "reseller",
    "sustained",
    "unusual_hour",
    "unusual_time",
    "velocity",
]


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
            return finding(
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
    return finding(
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
        if view.peers is not None and view.peers_of == obs.deployment:
            # the deployment's keys are other apps' with ceilings of their own: they judge a
            # declared key only from ``declared_share`` of what it was declared for
            floor = v.declared_share * declared.tokens_per_minute * max(1.0, v.window_s / 60.0)
            tokens_limit = max(tokens_limit, floor)
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
    return finding(
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
    return finding(
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
        return finding(
            "unusual_time",
            "medium",
            obs,
            f"Key used again after {idle / 86400:.0f} days of dormancy.",
            dormant_days=round(idle / 86400, 1),
        )
    odd = view.odd_hour
    if odd is None:
        odd = view.odd_hour = unusual_hour(view, now, s)
    if not odd:
        return None
    count = key.unusual.count(now) + 1
    if count < r.requests:
        return None
    return finding(
        "unusual_time",
        "low",
        obs,
        f"{count} requests within {r.window_s:.0f} s in hours this key is not used.",
        unusual_requests=count,
    )


def burst(view: Baselines, obs: Observation, now: float, s: DetectSettings) -> Detection | None:
    """12. Short bursts of requests far above the key's own busiest ``window_s``, again and
    again with quiet in between: a stolen key used a few minutes every few hours, under the
    velocity floors and in the key's usual hours."""
    r, key = s.burst, view.key
    if obs.key_id is None or key is None or key.burst_requests.most() + 1 <= key.burst_limit:
        return None  # most requests: below the threshold, even before the window expires
    count = key.burst_requests.total(now) + 1
    threshold = key.burst_limit
    if count <= threshold or not key.mature():
        return None
    new = now - key.last_hot > r.quiet_s
    bursts = key.bursts.count(now) + (1 if new else 0)
    if bursts < r.bursts:
        return None
    return finding(
        "burst",
        "medium",
        obs,
        f"{bursts} bursts within {r.span_s / 3600:.0f} h, this one {count:.0f} requests in "
        f"{r.window_s:.0f} s (threshold {threshold:.0f}): a stolen key used in bursts.",
        bursts=bursts,
        requests_in_window=round(count),
        threshold=round(threshold),
    )


def model_mix(view: Baselines, obs: Observation, now: float, s: DetectSettings) -> Detection | None:
    """13. A key spending most of its recent requests on a deployment its history (and its
    app's) hardly holds: resold access serving another model with the app's key."""
    r, key, deployment = s.model_mix, view.key, obs.deployment
    if obs.key_id is None or deployment is None or key is None or not key.mature():
        return None
    share = key.mix_share(deployment)
    if share >= r.rare_share:
        return None
    app = view.app
    if app is not None and app.mature() and app.mix_share(deployment) >= r.rare_share:
        return None
    recent = key.recent_mix.get(deployment)
    on = (recent.total(now) if recent is not None else 0.0) + 1
    if on < r.min_requests:
        return None
    total = key.recent_requests.total(now) + 1
    if on < r.shift_share * total:
        return None
    return finding(
        "model_mix",
        "medium",
        obs,
        f"{on:.0f} of the key's {total:.0f} requests within {r.window_s / 60:.0f} min went to "
        f"{deployment}, {share:.1%} of its history: another model served with this key.",
        deployment=deployment,
        requests_on_it=round(on),
        requests=round(total),
        history_share=round(share, 4),
    )


def sustained(view: Baselines, obs: Observation, now: float, s: DetectSettings) -> Detection | None:
    """14. Tokens over an hour far above the key's own busiest hour, or, for a key without a
    history, above its mature app's busiest hour with all its keys: a thief under the
    per-minute floors for hours (long completions one at a time, a steady pace)."""
    key = view.key
    if key is None or key.unfolded + obs.prompt_tokens + obs.completion_tokens <= key.hour_room:
        return None  # most requests: below even an upper bound of the window's tokens
    base = view.base
    if base is None:
        return None  # no history at all: the velocity rule's defaults and peers judge
    r = s.sustained
    if base is key:
        limit, judged = key.hour_limit, "own history"
    else:  # its app's (a key without a history of its own)
        limit = sustained_threshold(base, r, now, r.new_key_multiplier)
        judged = f"app {obs.app}, all its keys"
    tokens = key.hour_tokens.total(now) + key.unfolded + obs.tokens
    if tokens <= limit:
        return None
    return finding(
        "sustained",
        "high",
        obs,
        f"{tokens:.0f} tokens within {r.window_s / 60:.0f} min (threshold {limit:.0f}, "
        f"against the busiest such window of its {judged}): "
        "usage far above the baseline for a long time, each minute under the velocity floors.",
        tokens_in_window=round(tokens),
        threshold=round(limit),
        judged_against=judged,
    )
