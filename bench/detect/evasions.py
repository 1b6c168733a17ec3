"""Evasions: attacks shaped by someone who read the published rules and stays under each
threshold, and benign look-alikes the rules must leave alone.

* ``stuffing-scattered``: garbage credentials, each from another /24 of another /16 with
  another client fingerprint: no address, network or client ever counts more than one;
* ``stuffing-scattered-slow``: the same at one attempt every 5 s for two hours;
* ``stuffing-trickle``: one address, one garbage credential every 100 s for a day (under the
  minute's and the ten minutes' counts);
* ``stuffing-leaked-key-slow``: one leaked (revoked) key id tried from a new network every
  25 minutes for a day;
* ``probe-tiny-budget``: an empty prompt with max_tokens 3; ``probe-hi-five``: "hi" with
  max_tokens 5 from a network and client new to the key; ``probe-context-noseed``: an empty
  context-size probe at temperature 0 without a seed;
* ``burn-long-completions``: the app's own key, host and client, one long completion a minute
  (under the minute's token floor) for hours; ``burn-streaming``: a few long streams at a time;
* ``new-key-steady``: a brand-new key of a mature app spending just under the per-minute
  floor, every minute, for hours, from the app's host with its client;
* ``repetition-slow-spread``: one prompt through keys of three apps, 12 minutes apart;
* ``enumeration-interleaved``: three unknown deployments every two hours from the app's host.

Benign: a CI load test on a new key (identical short prompts), a team onboarding many keys
(with typos), an autoscaled fleet still presenting its revoked key from its own networks after
a rotation, and a nightly batch moved to a new key of its app.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator

from attacks import Scenario, home, refused, req, victim
from traffic import DAY, T0, client

from keyguard.core.observation import Observation, network_of

__all__ = ["scenarios", "benign_lookalikes"]

TOOLS = (
    "python-requests/2.{}.0",
    "curl/8.{}.0",
    "Go-http-client/{}.1",
    "node-fetch/3.{}.2",
    "axios/1.{}.7",
    "okhttp/4.{}.0",
    "aiohttp/3.{}.1",
    "Mozilla/5.0 (X11; Linux x86_64) rv:1{}.0",
)


def _at(day: float, hour: float) -> float:
    return T0 + day * DAY + hour * 3600


def _scattered_address(rng: random.Random) -> str:
    a, b, c = rng.randrange(11, 223), rng.randrange(256), rng.randrange(256)
    return f"{a}.{b}.{c}.{rng.randrange(2, 250)}"


def stuffing_scattered(n: int, every: float) -> Callable[..., Iterator[Observation]]:
    """Garbage credentials, each from a random address and a random tool and version."""

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n):
            source = _scattered_address(rng)
            tool = rng.choice(TOOLS).format(rng.randrange(40))
            yield refused(
                rng, tag, start + i * every + rng.random(), "malformed_key", source=source,
                network=network_of(source), key_id=None, app=None, presented_key_id=None,
                refused=f"{tag}-{rng.getrandbits(64):016x}", user_agent=tool, client=None,
            )  # fmt: skip

    return make


def stuffing_trickle(source: str, n: int, every: float) -> Callable[..., Iterator[Observation]]:
    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n):
            yield refused(
                rng, tag, start + i * every + rng.random() * 10, "malformed_key", source=source,
                network=network_of(source), key_id=None, app=None, presented_key_id=None,
                refused=f"{tag}-{rng.getrandbits(64):016x}", user_agent="curl/8.5.0",
            )  # fmt: skip

    return make


def leaked_key_slow(key: str, n: int, every: float) -> Callable[..., Iterator[Observation]]:
    """One revoked key id from a new network each time, far apart."""

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for i in range(n):
            source = _scattered_address(rng)
            yield refused(
                rng, tag, start + i * every, "revoked_key", source=source, key_id=None,
                app=None, presented_key_id=key, refused=f"{key}-secret",
                user_agent="OpenAI/Python 1.40.0",
            )  # fmt: skip

    return make


def tiny_probe(
    app: str, index: int, source: str, ua: str, **shape: object
) -> Callable[..., Iterator[Observation]]:
    """A key checker's probe (``shape``), twice, from its own network and client."""

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        ident = {**victim(app, index), "user_agent": ua, "client": None}
        for i in range(2):
            yield req(
                rng, tag, start + i * 45, source=source, prompt_tokens=8,
                completion_tokens=min(int(shape.get("max_tokens") or 9), 9), **ident, **shape,
            )  # type: ignore[arg-type]  # fmt: skip

    return make


def burn(
    app: str,
    index: int,
    completion: int,
    every: float,
    hours: float,
    *,
    key: str | None = None,
    stream: bool = False,
    latency: float = 40_000.0,
    deployment: str = "gpt-4o-mini",
) -> Callable[..., Iterator[Observation]]:
    """The app's key (or a brand-new ``key`` of the app), its host and its client: one
    request of ``completion`` output tokens every ``every`` seconds for ``hours``."""

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        ident = victim(app, index)
        if key is not None:
            ident = {**ident, "key_id": key}
        t, end = start, start + hours * 3600
        while t < end:
            yield req(
                rng,
                tag,
                t,
                source=f"{home(app).rsplit('.', 1)[0]}.{rng.randrange(2, 250)}",
                deployment=deployment,
                prompt_tokens=int(rng.uniform(300, 900)),
                completion_tokens=int(completion * rng.uniform(0.9, 1.0)),
                max_tokens=completion,
                latency_ms=latency * rng.uniform(0.8, 1.2),
                stream=stream,
                **ident,
            )
            t += every * rng.uniform(0.85, 1.15)

    return make


def repetition_spread(
    keys: list[dict[str, object]], sources: list[str], n: int, every: float
) -> Callable[..., Iterator[Observation]]:
    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        digest = hashlib.sha256(f"{tag}-prompt".encode()).hexdigest()[:16]
        for i in range(n):
            yield req(
                rng,
                tag,
                start + i * every + rng.random() * 60,
                **keys[i % len(keys)],
                source=sources[i % len(sources)],
                prompt_digest=digest,
            )

    return make


def enumeration_interleaved(
    app: str, index: int, rounds: int, every: float
) -> Callable[..., Iterator[Observation]]:
    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        for r in range(rounds):
            for i in range(3):
                yield refused(
                    rng, tag, start + r * every + i * 200, "unknown_deployment",
                    source=home(app), status=404, cost=0.0,
                    requested=hashlib.sha256(f"{tag}-{r}-{i}".encode()).hexdigest()[:12],
                    **victim(app, index),
                )  # fmt: skip

    return make


def scenarios() -> list[Scenario]:
    """Days 14-27, on keys and at times the library's own scenarios leave alone."""
    return [
        Scenario("stuffing-scattered", "stuffing", _at(27, 2.0), stuffing_scattered(90, 1.0)),
        Scenario(
            "stuffing-scattered-slow", "stuffing", _at(14, 3.0), stuffing_scattered(1440, 5.0)
        ),
        Scenario(
            "stuffing-trickle", "stuffing", _at(15, 0.0), stuffing_trickle("89.248.165.2", 860, 100)
        ),
        Scenario(
            "stuffing-leaked-key-slow",
            "stuffing",
            _at(27, 0.5),
            leaked_key_slow("LEAKEDKEY042", 58, 1500),
        ),
        Scenario(
            "probe-tiny-budget",
            "key_probe",
            _at(27, 5.0),
            tiny_probe(
                "hr-assistant", 0, "104.28.41.7", "curl/8.5.0", max_tokens=3, empty_prompt=True
            ),
        ),
        Scenario(
            "probe-hi-five",
            "key_probe",
            _at(27, 9.0),
            tiny_probe(
                "billing-batch",
                0,
                "185.244.3.19",
                "OpenAI/Python 1.35.0",
                max_tokens=5,
                prompt_chars=2,
            ),
        ),
        Scenario(
            "probe-context-noseed",
            "key_probe",
            _at(27, 19.0),
            tiny_probe(
                "dev-sandbox",
                0,
                "104.28.200.3",
                "node-fetch/3.3.2",
                max_tokens=16000,
                empty_prompt=True,
                temperature=0.0,
            ),
        ),
        Scenario(
            "burn-long-completions",
            "sustained",
            _at(27, 10.0),
            burn("support-bot", 1, 15_000, 60.0, 4.0),
        ),
        Scenario(
            "burn-streaming",
            "sustained",
            _at(27, 13.0),
            burn("mobile-backend", 1, 9_000, 40.0, 3.0, stream=True, latency=90_000.0),
        ),
        Scenario(
            "new-key-steady",
            "sustained",
            _at(15, 2.0),
            burn("support-bot", 1, 1_800, 9.0, 3.0, key="SUPPORTci001", latency=5_000.0),
        ),
        Scenario(
            "repetition-slow-spread",
            "repetition",
            _at(27, 15.0),
            repetition_spread(
                [victim("dev-sandbox"), victim("hr-assistant"), victim("search-indexer")],
                ["146.70.33.5", "37.120.9.4", "185.220.7.7"],
                15,
                720.0,
            ),
        ),
        Scenario(
            "enumeration-interleaved",
            "enumeration",
            _at(14, 10.0),
            enumeration_interleaved("mobile-backend", 0, 4, 7200.0),
        ),
    ]


# -- benign look-alikes ----------------------------------------------------------------------


def _ci_load_test(rng: random.Random, start: float) -> Iterator[Observation]:
    """A new CI key of the dev sandbox: 600 identical short prompts in five minutes from the
    developers' network, three nights running."""
    ua, fp = client("1.58.0")
    digest = hashlib.sha256(b"ci-load-test-prompt").hexdigest()[:16]
    for night in range(3):
        t0 = start + night * DAY
        for i in range(600):
            yield req(
                rng, "ci", t0 + i * 0.5, key_id="CILOADTEST01", app="dev-sandbox",
                source=f"203.0.113.{rng.randrange(2, 250)}", user_agent=ua, client=fp,
                deployment="gpt-4o-mini", prompt_tokens=60, completion_tokens=16, max_tokens=16,
                latency_ms=300.0, prompt_digest=digest,
            )  # fmt: skip


def _onboarding(rng: random.Random, start: float) -> Iterator[Observation]:
    """A team onboarding: 25 keys of a new app created within an hour, each tried a few
    times from the office, with a few mistyped keys."""
    ua, fp = client("1.55.0", "Windows", "3.11.4")
    for k in range(25):
        key = f"ONBOARD{k:05d}"
        t = start + k * 140
        for i in range(rng.randrange(3, 6)):
            yield req(
                rng, "onboard", t + i * 20, key_id=key, app="onboarding-app",
                source=f"198.51.100.{rng.randrange(2, 250)}", user_agent=ua, client=fp,
                deployment="gpt-4o-mini",
            )  # fmt: skip
        if k % 4 == 0:
            yield refused(
                rng, "onboard", t - 5, "unknown_key", source="198.51.100.23", key_id=None,
                app=None, presented_key_id=f"ONBOARD{k:05d}"[:-1] + "X",
                refused=f"typo-{k}", user_agent=ua, client=fp,
            )  # fmt: skip


def _stale_fleet(rng: random.Random, start: float) -> Iterator[Observation]:
    """After a rotation, the mobile backend's fleet (its four egress networks) still presents
    the old key for an hour: one credential, its own networks, many addresses."""
    ident = victim("mobile-backend", 0)
    for i in range(240):
        net = ("52.1.10", "52.1.11", "52.1.12", "52.1.13")[i % 4]
        yield refused(
            rng, "stale", start + i * 15, "revoked_key", source=f"{net}.{rng.randrange(2, 250)}",
            key_id=None, app=None, presented_key_id=ident["key_id"], refused="stale-secret",
            user_agent=ident["user_agent"], client=ident["client"],
        )  # fmt: skip


def _batch_new_key(rng: random.Random, start: float) -> Iterator[Observation]:
    """The billing batch moved to a new key of its app: the same nightly volume, 5 nights."""
    ua, fp = victim("billing-batch")["user_agent"], victim("billing-batch")["client"]
    for night in range(5):
        t, end = start + night * DAY, start + night * DAY + 1.5 * 3600
        while t < end:
            yield req(
                rng, "batchkey", t, key_id="BILLINGNEW01", app="billing-batch",
                source=f"40.112.5.{rng.randrange(2, 250)}", user_agent=ua, client=fp,
                deployment=rng.choice(("text-embedding-3-small", "gpt-4o")),
                prompt_tokens=int(rng.lognormvariate(7.2, 0.5)),
                completion_tokens=int(rng.lognormvariate(4.0, 0.8)), latency_ms=600.0,
            )  # fmt: skip
            t += rng.expovariate(0.5)


def benign_lookalikes(seed: int) -> Iterator[Observation]:
    rng = random.Random(f"{seed}:lookalikes")
    yield from _ci_load_test(rng, _at(15, 23.0))
    yield from _onboarding(rng, _at(16, 14.0))
    yield from _stale_fleet(rng, _at(18, 11.0))
    yield from _batch_new_key(rng, _at(23, 1.0))
