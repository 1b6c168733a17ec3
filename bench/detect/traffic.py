"""Benign traffic: weeks of requests from several apps, compressed in time (an injected clock).

Each app has its own keys, egress networks, clients (user agent + X-Stainless fingerprint),
deployments, api-version, token sizes and a rate that varies by hour and weekday. The traffic
also holds the legitimate changes that make detection hard: a key rotation, an SDK upgrade, a
new region, a developer working from a new place, a nightly batch, bursty test runs, weekend
work, health checks ("ping", one token) from an app's own hosts, and a template sent with a
different order id each time. Everything is seeded: the same seed gives the same requests.
"""

from __future__ import annotations

import hashlib
import math
import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from keyguard.core.observation import Observation, normalised

__all__ = ["App", "APPS", "benign", "T0", "DAY", "WEEK", "PRICES", "cost_of", "client"]

DAY = 86400.0
WEEK = 7 * DAY
T0 = 1_767_571_200.0  # Monday 2026-01-05 00:00 UTC
PRICES = {  # per 1,000 tokens (input, output)
    "gpt-4o": (0.0025, 0.01),
    "gpt-4o-mini": (0.00015, 0.0006),
    "text-embedding-3-small": (0.00002, 0.0),
}


def cost_of(deployment: str, prompt: int, completion: int) -> float:
    p_in, p_out = PRICES.get(deployment, (0.0025, 0.01))
    return round(prompt / 1000 * p_in + completion / 1000 * p_out, 6)


def client(sdk: str, os_: str = "Linux", runtime: str = "3.11.9") -> tuple[str, str]:
    """(user agent, X-Stainless fingerprint) of an openai-python client."""
    return (
        f"AsyncAzureOpenAI/Python {sdk}",
        f"python/{sdk}/{os_}/x64/CPython/{runtime}",
    )


def _hour(t: float) -> float:
    return (t % DAY) / 3600


def _weekday(t: float) -> int:
    return int((t - T0) // DAY) % 7


def diurnal(base: float, weekend: float = 0.6) -> Callable[[float], float]:
    def rate(t: float) -> float:
        r = base * (1 + 0.7 * math.sin(2 * math.pi * (_hour(t) - 9) / 24))
        return r * (weekend if _weekday(t) >= 5 else 1.0)

    return rate


def business(peak: float, evening: float = 0.05) -> Callable[[float], float]:
    def rate(t: float) -> float:
        if _weekday(t) >= 5:
            return 0.0
        h = _hour(t)
        if 8 <= h < 18:
            return peak * (0.6 + 0.4 * math.sin(math.pi * (h - 8) / 10))
        if 18 <= h < 21:
            return peak * evening
        return 0.0

    return rate


def nightly(peak: float) -> Callable[[float], float]:
    def rate(t: float) -> float:
        return peak if 1.0 <= _hour(t) < 2.5 else 0.0

    return rate


@dataclass
class App:
    name: str
    keys: list[tuple[str, float, float]]  # (key id, from, until)
    networks: list[tuple[str, float]]  # (/24 prefix "a.b.c", from)
    clients: list[tuple[tuple[str, str], float, float]]  # (client, from, until)
    deployments: list[tuple[str, float]]  # (name, weight)
    rate: Callable[[float], float]  # requests per minute at time t
    prompt: tuple[float, float] = (6.0, 0.6)  # lognormal mu, sigma
    completion: tuple[float, float] = (5.0, 0.6)
    operation: str = "chat"
    api_version: str | None = "2024-10-21"
    latency_ms: float = 900.0
    bursts: float = 0.0  # probability per minute of starting a 5-minute burst (x8 rate)
    active: tuple[float, float] = (0.0, 1e18)
    extra: dict[str, object] = field(default_factory=dict)

    def at(self, items: list[tuple[object, float, float]], t: float) -> list[object]:
        return [v for v, start, end in items if start <= t < end]


def _k(tag: str) -> str:
    return (tag + "0" * 12)[:12]


NEVER = 1e18
APPS = [
    App(  # 24/7 customer support bot; its key is rotated on day 14, a new region on day 20
        "support-bot",
        keys=[(_k("SUPPORTold"), 0, T0 + 14 * DAY), (_k("SUPPORTnew"), T0 + 14 * DAY, NEVER)],
        networks=[("20.42.7", 0), ("20.42.9", 0), ("52.160.3", T0 + 20 * DAY)],
        clients=[(client("1.54.0"), 0, NEVER)],
        deployments=[("gpt-4o-mini", 0.9), ("gpt-4o", 0.1)],
        rate=diurnal(5.0),
        prompt=(6.5, 0.5),
        completion=(5.2, 0.5),
    ),
    App(  # HR assistant: weekday office hours, from the office network
        "hr-assistant",
        keys=[(_k("HRKEY"), 0, NEVER)],
        networks=[("198.51.100", 0)],
        clients=[(client("1.40.0", "Windows", "3.10.11"), 0, NEVER)],
        deployments=[("gpt-4o", 1.0)],
        rate=business(5.0),
        prompt=(6.8, 0.7),
        completion=(5.5, 0.6),
    ),
    App(  # nightly batch: embeddings and summaries, 01:00-02:30 UTC
        "billing-batch",
        keys=[(_k("BILLINGBATCH"), 0, NEVER)],
        networks=[("40.112.5", 0)],
        clients=[(client("1.45.1"), 0, NEVER)],
        deployments=[("text-embedding-3-small", 0.7), ("gpt-4o", 0.3)],
        rate=nightly(30.0),
        prompt=(7.2, 0.5),
        completion=(4.0, 0.8),
        latency_ms=600.0,
    ),
    App(  # search indexer: steady embeddings around the clock
        "search-indexer",
        keys=[(_k("SEARCHINDEX"), 0, NEVER)],
        networks=[("13.64.20", 0)],
        clients=[(client("1.52.2"), 0, NEVER)],
        deployments=[("text-embedding-3-small", 1.0)],
        rate=diurnal(2.0, weekend=1.0),
        prompt=(6.0, 0.4),
        completion=(0.0, 0.0),
        operation="embeddings",
        latency_ms=150.0,
    ),
    App(  # mobile backend: autoscaled across four egress networks; SDK upgrade on day 18
        "mobile-backend",
        keys=[(_k("MOBILEKEY1"), 0, NEVER), (_k("MOBILEKEY2"), 0, NEVER)],
        networks=[("52.1.10", 0), ("52.1.11", 0), ("52.1.12", 0), ("52.1.13", 0)],
        clients=[(client("1.50.0"), 0, T0 + 18 * DAY), (client("1.60.0"), T0 + 18 * DAY, NEVER)],
        deployments=[("gpt-4o-mini", 1.0)],
        rate=diurnal(3.0, weekend=1.3),
        api_version=None,  # the v1 API
        bursts=0.002,
    ),
    App(  # developers: several machines and homes, bursts of test runs, some weekend work
        "dev-sandbox",
        keys=[(_k("DEVSANDBOX"), 0, NEVER)],
        networks=[("203.0.113", 0), ("81.2.69", 0), ("92.40.1", 0), ("185.3.4", T0 + 23 * DAY)],
        clients=[
            (client("1.54.0", "MacOS", "3.12.1"), 0, NEVER),
            (client("1.51.0"), 0, NEVER),
            (client("1.55.0", "Windows", "3.11.4"), 0, NEVER),
            (client("1.58.0", "MacOS", "3.12.1"), T0 + 16 * DAY, NEVER),
        ],
        deployments=[("gpt-4o", 0.5), ("gpt-4o-mini", 0.5)],
        rate=business(0.8, evening=0.25),
        bursts=0.004,
        api_version="2025-01-01-preview",
    ),
    App(  # a reporting tool decommissioned after ten days (its key is left behind)
        "legacy-report",
        keys=[(_k("LEGACYREPORT"), 0, NEVER)],
        networks=[("23.96.1", 0)],
        clients=[(client("1.30.0"), 0, NEVER)],
        deployments=[("gpt-4o", 1.0)],
        rate=business(1.0),
        active=(0.0, T0 + 10 * DAY),
    ),
]


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, int(rng.gauss(lam, math.sqrt(lam)) + 0.5))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


# Prompts as the repetition rule sees them (keyed digests). Most are new; an app repeats its
# own (retries, FAQ answers, fixed batch templates); a few identical templates are shared by
# apps (a boilerplate "summarise this" with the same text), the rule's hard negatives.
SHARED_TEMPLATES = ("shared-summarise", "shared-translate", "shared-classify")


def _prompt(app: App, rng: random.Random) -> str | None:
    draw = rng.random()
    if draw < 0.1:
        return None  # too short to compare ("hi", "ok")
    if draw < 0.4:
        return f"{app.name}-popular-{rng.randrange(50)}"
    if draw < 0.405:
        return rng.choice(SHARED_TEMPLATES)
    return f"{app.name}-{rng.getrandbits(48):012x}"


def _request(app: App, rng: random.Random, t: float) -> Observation | None:
    keys = app.at(app.keys, t)  # type: ignore[arg-type]
    clients = app.at(app.clients, t)  # type: ignore[arg-type]
    nets = [n for n, start in app.networks if start <= t]
    if not keys or not clients or not nets:
        return None
    key = rng.choice(keys)
    ua, fingerprint = rng.choice(clients)  # type: ignore[misc]
    net = rng.choice(nets)
    names, weights = zip(*app.deployments, strict=True)
    deployment = rng.choices(names, weights)[0]
    prompt = int(rng.lognormvariate(*app.prompt)) + 1
    completion = 0 if app.completion == (0.0, 0.0) else int(rng.lognormvariate(*app.completion))
    return Observation(
        prompt_digest=_prompt(app, rng),
        at=t,
        request_id=f"b{int(t * 1000)}{rng.randrange(1000)}",
        key_id=str(key),
        app=app.name,
        presented_key_id=str(key),
        source=f"{net}.{rng.randrange(2, 250)}",
        network=f"{net}.0/24",
        user_agent=ua,
        client=fingerprint,
        operation=app.operation,
        deployment=deployment,
        api_version=app.api_version,
        status=200,
        upstream_status=200,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=cost_of(deployment, prompt, completion),
        latency_ms=max(50.0, rng.gauss(app.latency_ms, app.latency_ms / 3)),
        upstream_ms=app.latency_ms * 0.95,
        max_tokens=1000 if app.operation == "chat" else None,
        temperature=0.7 if app.operation == "chat" else None,
    )


def _refused(
    rng: random.Random, t: float, source: str, key: str | None, credential: str
) -> Observation:
    ua, fingerprint = client("1.30.0")
    return Observation(
        at=t,
        request_id=f"f{int(t * 1000)}{rng.randrange(1000)}",
        presented_key_id=key,
        refused=credential,
        source=source,
        network=".".join(source.split(".")[:3]) + ".0/24",
        user_agent=ua,
        client=fingerprint,
        operation="chat",
        api_version="2024-10-21",
        status=401,
        reason="revoked_key" if key else "malformed_key",
    )


HEALTH_EVERY = 5  # minutes between the support bot's health checks
TEMPLATE_FROM = T0 + 16 * DAY  # the mobile backend's order-reply template, from day 16 on
_ID = string.ascii_uppercase + string.digits


def _health_check(app: App, rng: random.Random, t: float) -> Observation | None:
    """The app's health check: "ping" with max_tokens 1, from its hosts, with its client."""
    obs = _request(app, rng, t)
    if obs is not None:
        obs.prompt_digest, obs.prompt_chars, obs.max_tokens = None, 4, 1
        obs.prompt_tokens, obs.completion_tokens, obs.cost = 8, 1, cost_of("gpt-4o-mini", 8, 1)
    return obs


def _templated(app: App, rng: random.Random, t: float) -> Observation | None:
    """One of the app's requests with its order-reply template: a different order id each
    time, digested as the gateway does (a plain hash stands for the keyed one)."""
    obs = _request(app, rng, t)
    if obs is not None:
        order = "".join(rng.choice(_ID) for _ in range(4)) + "-" + str(rng.randrange(10**5))
        text = f"Draft a short, friendly reply to the customer about order {order}."
        obs.prompt_digest = hashlib.sha256(normalised(text)).hexdigest()[:16]
    return obs


def benign(weeks: float, seed: int, scale: float = 1.0) -> Iterator[Observation]:
    """The apps' requests over ``weeks`` from T0, minute by minute (not globally sorted)."""
    rng = random.Random(seed)
    more = random.Random(f"{seed}:more")  # health checks and templates: their own stream
    minutes = int(weeks * WEEK / 60)
    burst_until = {app.name: -1.0 for app in APPS}
    for m in range(minutes):
        t0 = T0 + m * 60
        for app in APPS:
            if not app.active[0] <= t0 < app.active[1]:
                continue
            rate = app.rate(t0) * scale
            if app.bursts and rng.random() < app.bursts and rate > 0:
                burst_until[app.name] = t0 + 300
            if t0 < burst_until[app.name]:
                rate = rate * 8 + 4
            for _ in range(_poisson(rng, rate)):
                obs = _request(app, rng, t0 + rng.random() * 60)
                if obs is not None:
                    yield obs
        if m % HEALTH_EVERY == 0:
            obs = _health_check(APPS[0], more, t0 + more.random() * 5)
            if obs is not None:
                yield obs
        if t0 >= TEMPLATE_FROM and more.random() < 0.6 * APPS[4].rate(t0) * scale / 3:
            obs = _templated(APPS[4], more, t0 + more.random() * 60)
            if obs is not None:
                yield obs
        if m % 1440 == 600:  # every day: the decommissioned report's cron, its key revoked
            for i in range(30):
                yield _refused(rng, t0 + i * 2, "23.96.1.40", _k("LEGACYREPORT"), "revoked")
        if m % 1440 == 700 and rng.random() < 0.5:  # a developer mistypes a key a few times
            for i in range(rng.randrange(2, 6)):
                yield _refused(rng, t0 + i * 20, "81.2.69.10", None, f"typo-{m}-{i}")
        if m % (7 * 1440) == 5 * 1440 + 600:  # once a week, a developer works on Saturday
            app = APPS[5]
            for i in range(12):
                obs = _request(app, rng, t0 + i * 240)
                if obs is not None:
                    yield obs
