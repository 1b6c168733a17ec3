"""Circuit breakers and the order in which a deployment's backends are tried (pure)."""

from __future__ import annotations

import random

import pytest

from keyguard.config import settings_from_mapping
from keyguard.errors import ConfigurationError
from keyguard.upstream.breaker import (
    CONNECT_HOLD_S,
    MAX_HOLD_S,
    BreakerState,
    is_open,
    parse_retry_after,
    trip,
)
from keyguard.upstream.pool import Target, Upstream, UpstreamPool


class NoCredential:
    def auth_headers(self) -> dict[str, str]:
        return {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def target(name: str, priority: int = 0, weight: int = 1) -> Target:
    return Target(Upstream(name, f"http://{name}", NoCredential()), "gpt-4o", priority, weight)


def test_a_429_holds_the_backend_for_exactly_its_retry_after() -> None:
    state = trip(BreakerState(), now=100.0, retry_after_s=7.5)
    assert is_open(state, 107.4) and not is_open(state, 107.5)
    assert trip(BreakerState(), 0.0, 10_000.0).open_until == MAX_HOLD_S


def test_connection_failures_back_off_exponentially() -> None:
    first = trip(BreakerState(), 0.0, None)
    second = trip(first, 10.0, None)
    assert first.open_until == CONNECT_HOLD_S
    assert second.open_until == 10.0 + 2 * CONNECT_HOLD_S
    assert trip(BreakerState(failures=40), 0.0, None).open_until == MAX_HOLD_S


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "9"}, 9.0),
        ({"retry-after": "Thu, 01 Jan 1970 00:01:40 GMT"}, 40.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_headers(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers, wall_now=60.0) == seconds


def test_plan_orders_by_priority_and_skips_open_breakers() -> None:
    clock = [0.0]
    east, west, backup = target("east"), target("west"), target("backup", priority=1)
    pool = UpstreamPool(
        [], {"gpt-4o": [backup, east, west]}, clock=lambda: clock[0], rng=random.Random(1)
    )
    plan = pool.plan("gpt-4o")
    assert set(plan[:2]) == {east, west} and plan[2] is backup
    pool.failed(east, 30.0)
    assert pool.plan("gpt-4o", first=west) == [west, backup]
    pool.failed(west, 10.0)
    pool.failed(backup, 20.0)
    assert pool.plan("gpt-4o") == []
    assert pool.retry_in("gpt-4o") == 10.0
    clock[0] = 10.0
    assert pool.plan("gpt-4o") == [west]
    pool.succeeded(east)
    assert pool.plan("gpt-4o", first=east)[0] is east
    assert pool.resolve("nope") is None


def test_weights_favour_heavier_backends() -> None:
    heavy, light = target("heavy", weight=9), target("light", weight=1)
    pool = UpstreamPool([], {"gpt-4o": [heavy, light]}, rng=random.Random(3))
    firsts = [pool.plan("gpt-4o")[0] for _ in range(1000)]
    assert 850 < firsts.count(heavy) < 950


def upstreams(*specs: tuple[str, dict[str, object]]) -> list[dict[str, object]]:
    return [
        {
            "name": name,
            "endpoint": f"https://{name}.openai.azure.com",
            "credential": {"vault": f"upstream/{name}"},
            "deployments": deployments,
        }
        for name, deployments in specs
    ]


def test_a_deployment_may_be_served_by_several_upstreams() -> None:
    settings = settings_from_mapping(
        {
            "upstreams": upstreams(
                ("east", {"gpt-4o": {"priority": 0, "weight": 2}}),
                ("west", {"gpt-4o": {"upstream_deployment": "gpt4o-weu", "priority": 1}}),
            )
        }
    )
    deps = [up.deployments["gpt-4o"] for up in settings.upstreams]
    assert [(d.priority, d.weight) for d in deps] == [(0, 2), (1, 1)]


def test_backends_of_one_deployment_must_agree_on_its_model() -> None:
    with pytest.raises(ConfigurationError, match="disagree on its model"):
        settings_from_mapping(
            {
                "upstreams": upstreams(
                    ("east", {"chat": {"model": "gpt-4o"}}),
                    ("west", {"chat": {"model": "gpt-4o-mini"}}),
                )
            }
        )
