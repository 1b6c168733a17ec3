"""Attack scenarios mixed into the benign traffic: one family per rule, plus slow abuse.

Each scenario steals (or probes for) a key of one of the apps in :mod:`traffic` at a given time
in weeks 3-4, after the baselines have formed, and yields its requests labelled
``attack:<scenario>:<rule that should catch it>``. Attackers copy what they can: the victim's
user agent and client fingerprint when they have the app's code, its network when they are on
its host.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from traffic import APPS, DAY, T0, client, cost_of

from keyguard.core.observation import Observation, network_of, normalised, prompt_text

__all__ = ["Scenario", "scenarios"]

EMPTY_PROBE = {"max_tokens": 1, "empty_prompt": True}
RESELLER_CLIENTS = [
    ("SillyTavern/1.12.4", None),
    ("curl/8.5.0", None),
    ("node-fetch/3.3.2", None),
    ("python-requests/2.31.0", None),
    ("Go-http-client/2.0", None),
    ("axios/1.6.7", None),
    ("OpenAI/JS 4.28.0", "js/4.28.0/Windows/x64/node/v20.11.0"),
    ("OpenAI/Python 1.12.0", "python/1.12.0/Windows/x64/CPython/3.12.0"),
    ("AsyncOpenAI/Python 1.33.0", "python/1.33.0/MacOS/arm64/CPython/3.11.6"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", None),
    ("agnai/1.0", None),
    ("RisuAI/114.0", None),
]


@dataclass(frozen=True)
class Scenario:
    name: str
    rule: str
    start: float
    make: Callable[[random.Random, str, float], Iterator[Observation]]

    def requests(self, seed: int) -> Iterator[tuple[Observation, str]]:
        rng = random.Random(f"{seed}:{self.name}")
        label = f"attack:{self.name}:{self.rule}"
        for obs in self.make(rng, self.name, self.start):
            yield obs, label


def _app(name: str) -> object:
    return next(a for a in APPS if a.name == name)


def req(rng: random.Random, tag: str, at: float, **kw: object) -> Observation:
    """A successful chat request, overridable field by field."""
    fields: dict[str, object] = {
        "at": at,
        "request_id": f"{tag}-{int(at * 1000)}-{rng.randrange(10**6)}",
        "operation": "chat",
        "deployment": "gpt-4o",
        "api_version": "2024-10-21",
        "status": 200,
        "upstream_status": 200,
        "prompt_tokens": int(rng.lognormvariate(6.5, 0.5)),
        "completion_tokens": int(rng.lognormvariate(5.5, 0.5)),
        "latency_ms": rng.uniform(600, 3000),
        "max_tokens": 1000,
        "temperature": 0.8,
    }
    fields.update(kw)
    if "key_id" in fields and "presented_key_id" not in fields:
        fields["presented_key_id"] = fields["key_id"]
    if fields.get("network") is None and fields.get("source"):
        fields["network"] = ".".join(str(fields["source"]).split(".")[:3]) + ".0/24"
    if fields.get("cost") is None and fields["status"] == 200:
        dep = str(fields["deployment"] or "gpt-4o")
        fields["cost"] = cost_of(
            dep, int(fields["prompt_tokens"]), int(fields["completion_tokens"])
        )  # type: ignore[call-overload]
    return Observation(**fields)  # type: ignore[arg-type]


def refused(rng: random.Random, tag: str, at: float, reason: str, **kw: object) -> Observation:
    """A request the gateway refused before the upstream (401 unless ``status`` says
    otherwise): no deployment, no tokens, no cost; overridable field by field."""
    fields: dict[str, object] = {
        "status": 401, "upstream_status": 0, "reason": reason, "deployment": None,
        "prompt_tokens": 0, "completion_tokens": 0, "cost": None,
    }  # fmt: skip
    fields.update(kw)
    return req(rng, tag, at, **fields)


def victim(app: str, index: int = 0) -> dict[str, object]:
    """The identity of an app's key as its legitimate traffic shows it."""
    a = _app(app)
    key = a.keys[index][0]  # type: ignore[attr-defined]
    ua, fp = a.clients[-1][0]  # type: ignore[attr-defined]
    return {"key_id": key, "app": app, "user_agent": ua, "client": fp}


def home(app: str) -> str:
    return f"{_app(app).networks[0][0]}.77"  # type: ignore[attr-defined]


# -- families --------------------------------------------------------------------------------


def new_network(
    app: str, source: str, n: int, every: float
) -> Callable[..., Iterator[Observation]]:
    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n):
            yield req(rng, tag, start + i * every, source=source, **victim(app))

    return make


def many_networks(app: str, n: int) -> Callable[..., Iterator[Observation]]:
    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n * 3):
            net = f"{rng.randrange(60, 220)}.{rng.randrange(256)}.{i % n}.9"
            yield req(rng, tag, start + i * 20, source=net, **victim(app))

    return make


def velocity(
    app: str,
    index: int,
    rps: float,
    tokens: int,
    seconds: float,
    deployment: str = "gpt-4o",
    latency: float = 2000.0,
) -> Callable[..., Iterator[Observation]]:
    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        t, end = start, start + seconds
        while t < end:
            yield req(
                rng,
                tag,
                t,
                source=home(app),
                deployment=deployment,
                prompt_tokens=int(tokens * 0.7),
                completion_tokens=int(tokens * 0.3),
                latency_ms=latency,
                **victim(app, index),
            )
            t += rng.expovariate(rps)

    return make


def enumeration(app: str, source: str) -> Callable[..., Iterator[Observation]]:
    names = [
        "gpt-4",
        "gpt-4-32k",
        "gpt-35-turbo",
        "gpt-4-turbo",
        "dall-e-3",
        "gpt-4o-2024",
        "o1-preview",
        "claude",
        "gpt4",
        "gpt-4-vision",
    ]

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        yield req(
            rng,
            tag,
            start,
            source=source,
            operation="models",
            deployment=None,
            api_version=None,
            prompt_tokens=0,
            completion_tokens=0,
            **victim(app),
        )
        for i, name in enumerate(names):
            yield refused(
                rng, tag, start + 2 + i * 3, "unknown_deployment",
                source=source, requested=name, status=404, cost=0.0, **victim(app),
            )  # fmt: skip

    return make


def key_probe(app: str, source: str, context_first: bool) -> Callable[..., Iterator[Observation]]:
    ua = "axios/1.6.7"

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        ident = {**victim(app), "user_agent": ua, "client": None}
        probes = [
            {**EMPTY_PROBE, "prompt_tokens": 8, "completion_tokens": 1},
            {
                "max_tokens": 9000,
                "empty_prompt": True,
                "temperature": 0.0,
                "seed": 0,
                "prompt_tokens": 8,
                "completion_tokens": 9,
            },
        ]
        if context_first:
            probes.reverse()
        for i, shape in enumerate(probes):
            yield req(
                rng,
                tag,
                start + i * 2,
                source=source,
                api_version="2023-09-01-preview",
                **ident,
                **shape,
            )  # type: ignore[arg-type]

    return make


def stuffing_keys(source: str, n: int) -> Callable[..., Iterator[Observation]]:
    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n):
            kid = "".join(
                rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789")
                for _ in range(12)
            )
            yield refused(
                rng, tag, start + i * 1.5, "unknown_key", source=source, key_id=None, app=None,
                presented_key_id=kid, user_agent="python-requests/2.31.0",
            )  # fmt: skip

    return make


def stuffing_garbage(
    sources: Callable[[int], str],
    n: int,
    every: float,
    tool: str = "python-requests/2.31.0",
    reason: str = "malformed_key",
) -> Callable[..., Iterator[Observation]]:
    """Random key-shaped strings (no key id to count), all refused: ``sources(i)`` gives the
    address of the i-th. One address, one network, or a botnet sharing one tool; ``reason``
    ``azure_key_presented``: Azure-format keys from a list."""

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n):
            source = sources(i)
            yield refused(
                rng, tag, start + i * every, reason, source=source, network=network_of(source),
                key_id=None, app=None, presented_key_id=None,
                refused=f"{tag}-{rng.getrandbits(64):016x}", user_agent=tool,
            )  # fmt: skip

    return make


def new_key_velocity(
    app: str, source: str, per_minute: int, minutes: int
) -> Callable[..., Iterator[Observation]]:
    """A brand-new key (of a brand-new app: no history anywhere) spending fast from its first
    minute: judged against the deployment's other keys."""

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        key = "NEWKEY" + tag[-6:].upper().rjust(6, "0")
        n = per_minute * minutes // 2000
        for i in range(n):
            yield req(
                rng,
                tag,
                start + i * 60 * minutes / n,
                key_id=key,
                app=app,
                source=source,
                prompt_tokens=1900,
                completion_tokens=100,
                user_agent="OpenAI/Python 1.40.0",
            )

    return make


def repetition(
    keys: list[dict[str, object]], sources: list[str], n: int, every: float
) -> Callable[..., Iterator[Observation]]:
    """One prompt replayed with several keys and from several networks: a farm."""

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        digest = f"{tag}-prompt"
        for i in range(n):
            yield req(
                rng,
                tag,
                start + i * every,
                **keys[i % len(keys)],
                source=sources[i % len(sources)],
                prompt_digest=digest,
            )

    return make


def repetition_varied(
    keys: list[dict[str, object]], sources: list[str], n: int, every: float
) -> Callable[..., Iterator[Observation]]:
    """A farm replaying one prompt that varies its case, spacing and punctuation (and a
    numeric request counter) each time: digested as the gateway does, after normalising."""
    text = "Write a detailed, 3000-word thriller about a hacker who breaks into a bank!"

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n):
            variant = text.upper() if i % 3 == 0 else text.replace(",", "").replace("!", ".")
            variant = "  ".join(variant.split(" ")) + f" (#{rng.randrange(10**6)})" + "?" * (i % 2)
            digest = hashlib.sha256(normalised(variant)).hexdigest()[:16]
            yield req(
                rng,
                tag,
                start + i * every,
                **keys[i % len(keys)],
                source=sources[i % len(sources)],
                prompt_digest=digest,
            )

    return make


def enumeration_slow(
    app: str, index: int, names: int, every: float
) -> Callable[..., Iterator[Observation]]:
    """From the victim's own network with its client: one unknown deployment every ``every``
    seconds, over days (never 4 within 10 minutes)."""

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(names):
            yield refused(
                rng, tag, start + i * every, "unknown_deployment", source=home(app),
                requested=hashlib.sha256(f"{tag}-{i}".encode()).hexdigest()[:12], status=404,
                cost=0.0, **victim(app, index),
            )  # fmt: skip

    return make


LOOK_ALIKES = {"a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441"}
INVISIBLE = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad")


def repetition_disguised(
    keys: list[dict[str, object]], sources: list[str], n: int, every: float
) -> Callable[..., Iterator[Observation]]:
    """A farm replaying one prompt with invisible characters sprinkled in and some Latin
    letters swapped for Cyrillic look-alikes, differently each time."""
    text = "Continue the story: the detective opens the safe and finds a letter addressed to her."

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n):
            chars = [LOOK_ALIKES.get(c, c) if rng.random() < 0.3 else c for c in text]
            for _ in range(rng.randrange(2, 8)):
                chars.insert(rng.randrange(len(chars)), rng.choice(INVISIBLE))
            digest = hashlib.sha256(normalised("".join(chars))).hexdigest()[:16]
            yield req(
                rng,
                tag,
                start + i * every,
                **keys[i % len(keys)],
                source=sources[i % len(sources)],
                prompt_digest=digest,
            )

    return make


def stuffing_one_key(key: str, networks: int) -> Callable[..., Iterator[Observation]]:
    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(networks * 2):
            src = f"{rng.randrange(60, 220)}.{rng.randrange(256)}.{i // 2}.5"
            yield refused(
                rng, tag, start + i * 25, "revoked_key", source=src, key_id=None, app=None,
                presented_key_id=key, user_agent="OpenAI/Python 1.12.0",
            )  # fmt: skip

    return make


def decoy(key: str, source: str) -> Callable[..., Iterator[Observation]]:
    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        yield refused(
            rng, tag, start, "decoy_key", source=source, key_id=key, app="decoy-ci",
            deployment="gpt-4o", user_agent="curl/8.5.0",
        )  # fmt: skip

    return make


def raw_key(source: str) -> Callable[..., Iterator[Observation]]:
    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        yield refused(
            rng, tag, start, "azure_key_presented", source=source,
            user_agent="OpenAI/Python 1.12.0",
        )  # fmt: skip

    return make


def reseller(app: str, source: str, n: int) -> Callable[..., Iterator[Observation]]:
    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n * 3):
            ua, fp = RESELLER_CLIENTS[i % n]
            yield req(
                rng,
                tag,
                start + i * 40,
                source=source,
                user_agent=ua,
                client=fp,
                key_id=victim(app)["key_id"],
                app=app,
            )

    return make


def odd_hours(app: str, n: int) -> Callable[..., Iterator[Observation]]:
    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n):
            yield req(rng, tag, start + i * 120, source=home(app), **victim(app))

    return make


def slow_rotating(app: str, n: int, every: float) -> Callable[..., Iterator[Observation]]:
    """Low volume through a residential proxy pool: a new network each time."""

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n):
            src = f"{rng.randrange(60, 220)}.{rng.randrange(256)}.{rng.randrange(256)}.{i + 2}"
            yield req(
                rng,
                tag,
                start + i * every,
                source=src,
                prompt_tokens=300,
                completion_tokens=200,
                **victim(app),
            )

    return make


def slow_single(
    app: str, source: str, n: int, every: float
) -> Callable[..., Iterator[Observation]]:
    """A trickle from one network with a different client, below every rate threshold."""
    ua, fp = client("1.12.0", "Windows", "3.12.0")

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n):
            yield req(
                rng,
                tag,
                start + i * every,
                source=source,
                prompt_tokens=400,
                completion_tokens=300,
                **{**victim(app), "user_agent": ua, "client": fp},
            )

    return make


BASE62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def prompt_digest(messages: list[dict[str, str]]) -> str | None:
    """A chat body's prompt digest, as the gateway makes it (a plain hash stands for the
    keyed one): its text, normalised, at least 40 characters."""
    text = normalised(prompt_text({"messages": messages}))
    return hashlib.sha256(text).hexdigest()[:16] if len(text) >= 40 else None


def repetition_nonce(
    keys: list[dict[str, object]], sources: list[str], n: int, every: float, uuid: bool
) -> Callable[..., Iterator[Observation]]:
    """A farm replaying one prompt with a random id in each copy: ``req-7fK2pQ9x`` at its
    start, or a UUID in its middle."""
    text = "Write a detailed, 3000-word thriller about a hacker who breaks into a bank"

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n):
            if uuid:
                nonce = "-".join(
                    f"{rng.getrandbits(bits):0{bits // 4}x}" for bits in (32, 16, 16, 16, 48)
                )
                body = f"{text} (trace {nonce}), set in Lisbon."
            else:
                body = f"req-{''.join(rng.choice(BASE62) for _ in range(8))} {text}."
            yield req(
                rng,
                tag,
                start + i * every,
                **keys[i % len(keys)],
                source=sources[i % len(sources)],
                prompt_digest=prompt_digest([{"role": "user", "content": body}]),
            )

    return make


def repetition_system(
    keys: list[dict[str, object]], sources: list[str], n: int, every: float
) -> Callable[..., Iterator[Observation]]:
    """A farm replaying one user turn behind a system message it varies each time."""
    turn = "Continue the story: the detective opens the safe and finds a letter addressed to her."

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n):
            persona = rng.choice(("Nova", "Atlas", "Iris", "Echo", "Sol"))
            system = f"You are {persona}, a creative writer. Session {rng.getrandbits(40):x}."
            messages = [{"role": "system", "content": system}, {"role": "user", "content": turn}]
            yield req(
                rng,
                tag,
                start + i * every,
                **keys[i % len(keys)],
                source=sources[i % len(sources)],
                prompt_digest=prompt_digest(messages),
            )

    return make


def bursts(
    app: str, index: int, hours: list[float], n: int = 40, seconds: float = 120
) -> Callable[..., Iterator[Observation]]:
    """A stolen key used from the app's own host with its client: ``n`` small requests within
    ``seconds`` at each of ``hours`` (hours after the start), each burst under the velocity
    floors."""

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for hour in hours:
            for i in range(n):
                yield req(
                    rng,
                    tag,
                    start + hour * 3600 + i * seconds / n + rng.random(),
                    source=home(app),
                    deployment=_app(app).deployments[0][0],  # type: ignore[attr-defined]
                    prompt_tokens=int(rng.uniform(200, 400)),
                    completion_tokens=int(rng.uniform(50, 150)),
                    **victim(app, index),
                )

    return make


def model_mix(
    app: str, index: int, deployment: str, n: int, every: float, sources: list[str]
) -> Callable[..., Iterator[Observation]]:
    """A reseller on the app's hosts, with its client and key, at the app's own rate: its
    requests go to ``deployment``, which the app never used, alongside the app's own."""

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n):
            yield req(
                rng,
                tag,
                start + i * every + rng.random() * every / 2,
                source=f"{sources[i % len(sources)]}.{rng.randrange(2, 250)}",
                deployment=deployment,
                **victim(app, index),
            )

    return make


def liveness_probe(
    app: str, index: int, source: str, user_agent: str
) -> Callable[..., Iterator[Observation]]:
    """A key checker's liveness probe: "hi" with max_tokens (or max_completion_tokens) 1, from
    its own network with its own client; a few keys checked, so the key twice."""

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        ident = {**victim(app, index), "user_agent": user_agent, "client": None}
        for i in range(2):
            yield req(
                rng,
                tag,
                start + i * 30,
                source=source,
                prompt_chars=2,
                max_tokens=1,
                prompt_tokens=8,
                completion_tokens=1,
                **ident,
            )  # type: ignore[arg-type]

    return make


def at(day: float, hour: float) -> float:
    return T0 + day * DAY + hour * 3600


def scenarios() -> list[Scenario]:
    """The library: days 15-27 (weeks 3-4), never two scenarios on one key at once."""
    return [
        Scenario(
            "network-vps",
            "network",
            at(15, 11.2),
            new_network("hr-assistant", "185.220.101.4", 30, 240),
        ),
        Scenario(
            "network-cloud-vm",
            "network",
            at(16, 1.5),
            new_network("billing-batch", "34.90.1.20", 20, 30),
        ),
        Scenario("network-botnet", "network", at(17, 15.0), many_networks("mobile-backend", 8)),
        Scenario(
            "velocity-tokens", "velocity", at(19, 14.3), velocity("support-bot", 1, 20, 6000, 300)
        ),
        Scenario(
            "velocity-cost",
            "velocity",
            at(21, 9.7),
            velocity("search-indexer", 0, 3, 4000, 300, deployment="gpt-4o"),
        ),
        Scenario(
            "velocity-concurrency",
            "velocity",
            at(23, 10.4),
            velocity("hr-assistant", 0, 4, 600, 120, latency=60_000.0),
        ),
        Scenario(
            "enumeration-stolen",
            "enumeration",
            at(18, 20.0),
            enumeration("mobile-backend", "45.137.21.9"),
        ),
        Scenario(
            "enumeration-insider",
            "enumeration",
            at(24, 13.0),
            enumeration("dev-sandbox", "203.0.113.40"),
        ),
        Scenario(
            "probe-validity",
            "key_probe",
            at(16, 7.25),
            key_probe("support-bot", "104.28.3.9", False),
        ),
        Scenario(
            "probe-context",
            "key_probe",
            at(20, 22.5),
            key_probe("search-indexer", "104.28.77.1", True),
        ),
        Scenario(
            "probe-billing",
            "key_probe",
            at(25, 3.1),
            key_probe("billing-batch", "172.67.1.2", False),
        ),
        Scenario("stuffing-keys", "stuffing", at(17, 4.0), stuffing_keys("91.92.240.11", 40)),
        Scenario(
            "stuffing-leaked-key", "stuffing", at(22, 18.0), stuffing_one_key("REVOKEDKEY01", 10)
        ),
        Scenario("decoy-repo", "decoy", at(19, 2.0), decoy("DECOYCIKEY01", "45.9.148.3")),
        Scenario("decoy-paste", "decoy", at(26, 16.4), decoy("DECOYWIKI001", "5.188.10.7")),
        Scenario("raw-azure-key", "raw_azure_key", at(20, 12.0), raw_key("198.18.0.77")),
        Scenario(
            "reseller-proxy",
            "reseller",
            at(22, 10.0),
            reseller("mobile-backend", "52.1.12.200", 12),
        ),
        Scenario(
            "reseller-dev-key", "reseller", at(26, 21.0), reseller("dev-sandbox", "81.2.69.50", 8)
        ),
        Scenario("odd-hours-office", "unusual_time", at(20, 3.0), odd_hours("hr-assistant", 10)),
        Scenario("dormant-key", "unusual_time", at(25, 11.0), odd_hours("legacy-report", 5)),
        Scenario(
            "slow-proxy-pool", "network", at(24, 2.0), slow_rotating("search-indexer", 20, 900)
        ),
        Scenario(
            "stuffing-garbage",
            "stuffing",
            at(18, 9.0),
            stuffing_garbage(lambda i: "193.233.1.66", 60, 1.0),
        ),
        Scenario(
            "stuffing-garbage-subnet",
            "stuffing",
            at(21, 2.0),
            stuffing_garbage(lambda i: f"193.233.7.{10 + i % 40}", 60, 2.0),
        ),
        Scenario(
            "stuffing-garbage-botnet",
            "stuffing",
            at(23, 1.0),
            stuffing_garbage(
                lambda i: f"{60 + i % 150}.{i % 7}.{i}.9", 200, 0.9, "garbage-kit/0.3"
            ),
        ),
        Scenario(
            "stuffing-garbage-slow",
            "stuffing",
            at(25, 5.0),
            stuffing_garbage(lambda i: "193.233.9.4", 120, 9.0),
        ),
        Scenario(
            "stuffing-azure-keys",
            "stuffing",
            at(16, 20.5),
            stuffing_garbage(lambda i: "5.253.84.111", 60, 2.0, reason="azure_key_presented"),
        ),
        Scenario(
            "stuffing-ipv6-rotating",
            "stuffing",
            at(20, 16.3),
            stuffing_garbage(lambda i: f"2a0e:97c0:{i * 37 % 65536:x}:1::{i + 2:x}", 120, 2.0),
        ),
        Scenario(
            "repetition-varied",
            "repetition",
            at(26, 12.5),
            repetition_varied(
                [victim("mobile-backend", 1)],
                [f"{81 + i}.{10 + i}.{i * 5}.7" for i in range(8)],
                16,
                35.0,
            ),
        ),
        Scenario(
            "velocity-new-key",
            "velocity",
            at(19, 11.0),
            new_key_velocity("fresh-app", "45.155.205.3", 41_000, 5),
        ),
        Scenario(
            "repetition-farm",
            "repetition",
            at(22, 15.0),
            repetition(
                [victim("support-bot"), victim("mobile-backend"), victim("dev-sandbox")],
                ["95.214.27.1", "95.214.27.2", "91.200.12.5"],
                9,
                20.0,
            ),
        ),
        Scenario(
            "repetition-resale",
            "repetition",
            at(24, 18.0),
            repetition(
                [victim("search-indexer")],
                [f"{100 + i}.{i * 3}.{i * 7}.20" for i in range(8)],
                16,
                30.0,
            ),
        ),
        Scenario(
            "enumeration-slow",
            "enumeration",
            at(23, 2.0),
            enumeration_slow("support-bot", 1, 10, 5 * 3600),
        ),
        Scenario(
            "repetition-disguised",
            "repetition",
            at(25, 14.0),
            repetition_disguised(
                [victim("hr-assistant"), victim("search-indexer"), victim("mobile-backend", 1)],
                ["62.4.1.7", "62.4.9.7", "185.100.87.3"],
                12,
                30.0,
            ),
        ),
        Scenario(
            "slow-trickle",
            "network",
            at(26, 8.0),
            slow_single("support-bot", "31.13.24.8", 40, 600),
        ),
        Scenario(
            "repetition-nonce",
            "repetition",
            at(17, 19.0),
            repetition_nonce(
                [victim("support-bot", 1)],
                [f"{45 + i}.{20 + i}.{i * 9}.3" for i in range(8)],
                16,
                30.0,
                uuid=False,
            ),
        ),
        Scenario(
            "repetition-uuid",
            "repetition",
            at(18, 14.0),
            repetition_nonce(
                [victim("hr-assistant"), victim("dev-sandbox"), victim("mobile-backend", 1)],
                ["77.91.68.4", "77.91.70.9", "193.42.33.8"],
                12,
                25.0,
                uuid=True,
            ),
        ),
        Scenario(
            "repetition-system",
            "repetition",
            at(19, 16.0),
            repetition_system(
                [victim("support-bot", 1), victim("search-indexer"), victim("dev-sandbox")],
                ["146.70.1.5", "146.70.9.5", "37.120.4.4"],
                12,
                30.0,
            ),
        ),
        Scenario(
            "burst-periodic",
            "burst",
            at(20, 6.0),
            bursts("support-bot", 1, [3.0 * b for b in range(12)]),
        ),
        Scenario(
            "burst-office-hours",
            "burst",
            at(17, 9.5),
            bursts("hr-assistant", 0, [0.0, 3.0, 6.0, 24.0, 27.0, 30.0]),
        ),
        Scenario(
            "model-mix-mobile",
            "model_mix",
            at(21, 10.0),
            model_mix("mobile-backend", 1, "gpt-4o", 180, 60.0, ["52.1.10", "52.1.12"]),
        ),
        Scenario(
            "model-mix-indexer",
            "model_mix",
            at(16, 12.0),
            model_mix("search-indexer", 0, "gpt-4o", 240, 30.0, ["13.64.20"]),
        ),
        Scenario(
            "probe-liveness",
            "key_probe",
            at(18, 3.4),
            liveness_probe("dev-sandbox", 0, "104.28.9.14", "python-requests/2.31.0"),
        ),
        Scenario(
            "probe-liveness-sdk",
            "key_probe",
            at(23, 17.2),
            liveness_probe("mobile-backend", 1, "185.107.56.3", "OpenAI/Python 1.12.0"),
        ),
    ]
