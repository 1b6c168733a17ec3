"""New keys judged against what their own limit rules declare: the limit rules the scenario
library runs with, two attack families and the benign new keys they must not confuse.

* ``declared-ceiling``: a freshly created key (of a new app: no app history, no app peers)
  spends at its key rule's ``tpm`` from its first request; the limiter holds it to the rule
  (requests over a calendar minute's budget are refused, 429, no usage);
* ``declared-ceiling-app``: the same with only an app rule, the thief copying the app's SDK,
  on a deployment added lately (no key of it has a history: no peers at all);
* ``declared-over``: a new key that worked lightly for ten minutes (labelled benign), then
  spends twice its rule in a minute where the rule did not hold (a replica limiting on its
  own share after a backend outage, a rule raised and lowered again), on that deployment;
* benign: new keys working at 10-30 % and at ~60 % of their rule for days (they must raise
  nothing, and they grow into baselines of their own), and a new nightly batch app ramping to
  ~55 % of a rule far above what the other keys of its deployment spend.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from attacks import Scenario, req
from traffic import DAY, T0, client

from keyguard.core.observation import Observation
from keyguard.limits.settings import LimitSettings

__all__ = ["LIMITS", "scenarios", "benign_new_keys"]

# realistic ceilings: a few times each benign app's busiest minute; named keys for the rest
LIMITS = LimitSettings.model_validate(
    {
        "rules": [
            {"scope": "app", "name": "support-bot", "tpm": 60_000},
            {"scope": "app", "name": "hr-assistant", "tpm": 60_000},
            {"scope": "app", "name": "billing-batch", "tpm": 200_000},
            {"scope": "app", "name": "search-indexer", "tpm": 20_000},
            {"scope": "app", "name": "mobile-backend", "tpm": 60_000},
            {"scope": "app", "name": "dev-sandbox", "tpm": 40_000},
            {"scope": "app", "name": "legacy-report", "tpm": 10_000},
            {"scope": "app", "name": "ceiling-app", "tpm": 30_000},
            {"scope": "key", "name": "DECLAREDKEY1", "tpm": 20_000},
            {"scope": "key", "name": "DECLAREDKEY3", "tpm": 20_000},
            {"scope": "key", "name": "CALMNEWKEY01", "tpm": 20_000},
            {"scope": "key", "name": "BUSYNEWKEY01", "tpm": 20_000},
            {"scope": "key", "name": "BATCHNEWKEY1", "tpm": 120_000},
        ]
    }
)


def _limited(requests: Iterator[Observation], tpm: float | None) -> Iterator[Observation]:
    """What the limiter lets through: a request that would take the calendar minute over
    ``tpm`` is refused (429, no usage); ``None``: the limit does not hold."""
    spent: dict[int, float] = {}
    for obs in requests:
        minute = int(obs.at // 60)
        if tpm is not None and spent.get(minute, 0.0) + obs.tokens > tpm:
            obs.status, obs.upstream_status, obs.reason = 429, 0, "limit_tokens"
            obs.prompt_tokens = obs.completion_tokens = 0
            obs.cost = None
        else:
            spent[minute] = spent.get(minute, 0.0) + obs.tokens
        yield obs


def at_ceiling(
    key: str, app: str, source: str, tpm: float, share: float, minutes: float, **kw: object
) -> Callable[..., Iterator[Observation]]:
    """From its first request, requests of ~1,500 tokens at ``share`` of ``tpm``."""

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        def raw() -> Iterator[Observation]:
            t = start
            while t < start + minutes * 60:
                tokens = int(rng.uniform(1200, 1800))
                yield req(rng, tag, t, key_id=key, app=app, source=source,
                          prompt_tokens=tokens - 100, completion_tokens=100, **kw)  # fmt: skip
                t += 60 * 1500 / (share * tpm) * rng.uniform(0.7, 1.3)

        yield from _limited(raw(), tpm)

    return make


OVER = ("DECLAREDKEY3", "ceiling-other", "45.155.205.11", 20_000)
NEW_DEPLOYMENT = "gpt-4.1"  # added lately: no key of it has a history (no peers)


def _warm_up(rng: random.Random, start: float) -> Iterator[Observation]:
    """Ten light minutes of ``declared-over``'s key before the attack (one request of 800
    tokens a minute): past its first minute, still without a history."""
    key, app, source, _ = OVER
    for i in range(10):
        yield req(rng, "benign", start - 600 + i * 60, key_id=key, app=app, source=source,
                  prompt_tokens=700, completion_tokens=100, deployment=NEW_DEPLOYMENT)  # fmt: skip


def over_after_a_while(
    key: str, app: str, source: str, tpm: float
) -> Callable[..., Iterator[Observation]]:
    """2.1 x ``tpm`` within a minute, the limit not holding."""

    def make(rng: random.Random, tag: str, start: float) -> Iterator[Observation]:
        n = int(2.1 * tpm / 2000) + 1
        for i in range(n):
            yield req(rng, tag, start + i * 55 / n, key_id=key, app=app, source=source,
                      prompt_tokens=1900, completion_tokens=100,
                      deployment=NEW_DEPLOYMENT)  # fmt: skip

    return make


def _on(day: float, hour: float) -> float:
    return T0 + day * DAY + hour * 3600


OVER_AT = _on(26, 13.1)


def scenarios() -> list[Scenario]:
    on = _on
    ua, fp = client("1.52.0")
    return [
        Scenario(
            "declared-ceiling",
            "velocity",
            on(17, 10.2),
            at_ceiling("DECLAREDKEY1", "ceiling-new", "45.155.205.9", 20_000, 0.95, 5),
        ),
        Scenario(
            "declared-ceiling-app",
            "velocity",
            on(23, 3.4),
            at_ceiling(
                "DECLAREDKEY2",
                "ceiling-app",
                "45.155.205.10",
                30_000,
                1.0,
                5,
                user_agent=ua,
                client=fp,
                deployment=NEW_DEPLOYMENT,
            ),
        ),
        Scenario(
            "declared-over",
            "velocity",
            OVER_AT,
            over_after_a_while(*OVER),
        ),
    ]


def benign_new_keys(seed: int) -> Iterator[Observation]:
    """Two keys created on day 15 with a rule of 20,000 tokens a minute: one working at
    10-30 % of it, one at about 60 %, business hours for five weekdays (from its first
    minute: a new key's first minute is where the declaration judges)."""
    rng = random.Random(f"{seed}:benign-new-keys")
    yield from _warm_up(rng, OVER_AT)
    for key, app, low, high in (
        ("CALMNEWKEY01", "calm-new", 0.10, 0.30),
        ("BUSYNEWKEY01", "busy-new", 0.55, 0.65),
    ):
        for day in range(15, 22):
            if day % 7 >= 5:
                continue
            start = T0 + day * DAY + 9 * 3600
            t = start
            while t < start + 8 * 3600:
                tokens = int(rng.uniform(900, 1300))
                obs = req(rng, "benign", t, key_id=key, app=app, source="10.30.4.7",
                          prompt_tokens=tokens - 80, completion_tokens=80)  # fmt: skip
                yield obs
                share = rng.uniform(low, high)
                t += 60 * tokens / (share * 20_000)
    # a new nightly batch app declared at 120,000 a minute, far above the interactive keys of
    # its deployment: 10 % of its rule at first, ~55 % after 20 minutes, 90 minutes a night
    for night in range(15, 18):  # three nights: it never joins the deployment's peers
        start = T0 + night * DAY + 3 * 3600
        t = start
        while t < start + 5400:
            tokens = int(rng.uniform(2500, 3500))
            yield req(rng, "benign", t, key_id="BATCHNEWKEY1", app="batch-new",
                      source="40.112.6.9", prompt_tokens=tokens - 400,
                      completion_tokens=400)  # fmt: skip
            t += 60 * tokens / (12_000 + min(1.0, (t - start) / 1200) * 54_000)
