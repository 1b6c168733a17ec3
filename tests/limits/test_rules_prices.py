"""Configured rules to lines, the price table to costs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from keyguard.config import settings_from_mapping
from keyguard.errors import ConfigurationError
from keyguard.limits.model import Line
from keyguard.limits.prices import UnitPrice, cost_micro, price_for, to_micro
from keyguard.limits.rules import Rules, Subject
from keyguard.limits.settings import LimitSettings, Price

NOW = datetime(2026, 5, 17, 10, 30, 15, tzinfo=UTC).timestamp()
MINUTE = int(datetime(2026, 5, 17, 10, 30, tzinfo=UTC).timestamp())
DAY = int(datetime(2026, 5, 17, tzinfo=UTC).timestamp())
MONTH = int(datetime(2026, 5, 1, tzinfo=UTC).timestamp())


def rules(**cfg: object) -> Rules:
    return Rules(LimitSettings.model_validate(cfg))


def charges(r: Rules, subject: Subject, tokens: int, cost: int) -> list[tuple[Line, int]]:
    """The lines a request is charged to, each with its amount."""
    plan = r.plan(*subject, tokens, cost, NOW)
    if plan is None:
        return []
    return list(zip(plan.lines, plan.amounts(tokens, cost), strict=True))


def lines(r: Rules, subject: Subject, tokens: int, cost: int) -> list[Line]:
    return [line for line, _ in charges(r, subject, tokens, cost)]


def test_every_applicable_scope_becomes_a_line_in_its_current_window() -> None:
    r = rules(
        teams={"payments": ["billing-bot", "invoice-bot"]},
        rules=[
            {"scope": "key", "tpm": 1000},
            {"scope": "app", "rpm": 10, "concurrent": 2},
            {"scope": "team", "name": "payments", "tokens_per_day": 10_000},
            {"scope": "deployment", "name": "gpt-4o", "tpm": 50_000},
            {"scope": "global", "tokens_per_month": 1_000_000},
        ],
    )
    found = charges(r, Subject("k1", "billing-bot", "gpt-4o"), tokens=300, cost=0)
    assert [(ln.key, ln.kind, ln.limit, amount) for ln, amount in found] == [
        (f"key:k1:tpm:{MINUTE}", "tokens", 1000, 300),
        (f"app:billing-bot:rpm:{MINUTE}", "requests", 10, 1),
        ("app:billing-bot:conc", "concurrent", 2, 1),
        (f"team:payments:tpd:{DAY}", "tokens", 10_000, 300),
        (f"deployment:gpt-4o:tpm:{MINUTE}", "tokens", 50_000, 300),
        (f"global:*:tpmo:{MONTH}", "tokens", 1_000_000, 300),
    ]
    assert found[0][0].window_end == MINUTE + 60
    assert found[0][0].label == "tokens per minute of key 'k1'"
    # Another deployment, another app outside the team: only the unnamed rules apply.
    other = lines(r, Subject("k2", "chat-bot", "gpt-4o-mini"), tokens=5, cost=0)
    assert [ln.key.rsplit(":", 1)[0] for ln in other] == [
        "key:k2:tpm",
        "app:chat-bot:rpm",
        "app:chat-bot",
        "global:*:tpmo",
    ]


def test_a_named_rule_replaces_the_unnamed_one_for_its_entity() -> None:
    r = rules(rules=[{"scope": "app", "tpm": 100}, {"scope": "app", "name": "big", "tpm": 9000}])
    assert [ln.limit for ln in lines(r, Subject(None, "big", "d"), 1, 0)] == [9000]
    assert [ln.limit for ln in lines(r, Subject(None, "small", "d"), 1, 0)] == [100]


def test_zero_amounts_are_not_lines_and_names_are_escaped() -> None:
    r = rules(rules=[{"scope": "app", "tpm": 100, "rpm": 5}])
    assert [ln.kind for ln in lines(r, Subject(None, "a:b%c", "d"), 0, 0)] == ["requests"]
    assert lines(r, Subject(None, "a:b%c", "d"), 1, 0)[0].key.startswith("app:a%3Ab%25c:tpm")
    assert rules(rules=[{"scope": "app", "tpm": 100}]).plan(None, "a", "d", 0, 0, NOW) is None


def test_a_plan_is_shared_within_its_windows_and_computes_amounts_and_corrections() -> None:
    r = rules(
        rules=[{"scope": "app", "tpm": 100, "rpm": 5, "concurrent": 2}],
        budgets=[{"scope": "app", "per_day": 1}],
    )
    subject = Subject(None, "a", "d")
    plan = r.plan(*subject, 40, 7, NOW)
    assert plan is not None and r.plan(*subject, 99, 3, NOW + 1) is plan
    assert [ln.kind for ln in plan.lines] == ["tokens", "requests", "concurrent", "cost"]
    assert plan.amounts(40, 7) == (40, 1, 1, 7)
    # Settlement corrects tokens and cost, frees the slot, leaves the request count alone.
    assert [ln.kind for ln in plan.settled] == ["tokens", "concurrent", "cost"]
    assert plan.deltas(-15, 2) == (-15, -1, 2)
    # A new minute is a new plan with new keys; the day's budget counter stays.
    later = r.plan(*subject, 40, 7, NOW + 60)
    assert later is not None and later is not plan
    assert later.lines[0].key != plan.lines[0].key and later.lines[3].key == plan.lines[3].key
    only_slot = rules(rules=[{"scope": "app", "concurrent": 1}]).plan(*subject, 5, 0, NOW)
    assert only_slot is not None and only_slot.amounts(5, 0) == (1,)
    assert only_slot.deltas(-5, 0) == (-1,)
    scaled = plan.scaled(0.5)
    assert [ln.limit for ln in scaled.lines] == [50, 2, 1, 500_000]
    assert scaled.limits == (50, 2, 1, 500_000) and scaled.keys == plan.keys


def test_budgets_become_cost_lines_in_micro_units_with_a_soft_threshold() -> None:
    r = rules(
        teams={"t": ["a"]},
        budgets=[
            {"scope": "team", "name": "t", "per_day": "12.5", "soft_percent": 80},
            {"scope": "app", "per_month": 100},
        ],
    )
    found = charges(r, Subject(None, "a", "d"), tokens=10, cost=1234)
    assert [(ln.key, ln.limit, ln.soft, amount) for ln, amount in found] == [
        (f"app:a:costmo:{MONTH}", 100_000_000, 80_000_000, 1234),
        (f"team:t:costd:{DAY}", 12_500_000, 10_000_000, 1234),
    ]


def test_key_budgets_are_cost_lines_too_and_a_named_one_replaces_the_unnamed() -> None:
    r = rules(
        budgets=[
            {"scope": "key", "per_day": "0.5"},
            {"scope": "key", "name": "K1", "per_day": 3, "per_month": 20, "soft_percent": 50},
            {"scope": "app", "per_day": 100},
        ],
    )
    named = charges(r, Subject("K1", "a", "d"), tokens=10, cost=99)
    assert [(ln.key, ln.limit, ln.soft, ln.label) for ln, _ in named] == [
        (f"key:K1:costd:{DAY}", 3_000_000, 1_500_000, "budget per day of key 'K1'"),
        (f"key:K1:costmo:{MONTH}", 20_000_000, 10_000_000, "budget per month of key 'K1'"),
        (f"app:a:costd:{DAY}", 100_000_000, 80_000_000, "budget per day of app 'a'"),
    ]
    other = lines(r, Subject("K2", "a", "d"), tokens=10, cost=99)
    assert [(ln.key, ln.limit) for ln in other][0] == (f"key:K2:costd:{DAY}", 500_000)
    # A principal without a key id (an Entra token) has no key budget to be held to.
    assert [ln.key for ln in lines(r, Subject(None, "a", "d"), 10, 99)] == [f"app:a:costd:{DAY}"]
    assert r.budget("key", "K1") is not None and r.budget("deployment", "d") is None
    assert ("key", "K1") in r.named() and ("key", "K2") not in r.named()


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"budgets": [{"scope": "deployment", "per_day": 1}]}, "'key', 'app' or 'team'"),
        (
            {"budgets": [{"scope": "key", "per_day": 1}, {"scope": "key", "per_month": 1}]},
            "two budgets",
        ),
        ({"rules": [{"scope": "app"}]}, "at least one"),
        ({"rules": [{"scope": "global", "name": "x", "tpm": 1}]}, "no name"),
        ({"rules": [{"scope": "team", "name": "ghost", "tpm": 1}]}, "not in 'teams'"),
        ({"rules": [{"scope": "app", "tpm": 1}, {"scope": "app", "rpm": 1}]}, "two rules"),
        ({"rules": [{"scope": "app", "tpm": 0}]}, "greater than 0"),
        ({"budgets": [{"scope": "app"}]}, "per_day or per_month"),
        ({"backend": "redis://:hunter2@localhost/0"}, "without a password"),
        ({"backend": "memcached://x"}, "'memory' or a redis"),
    ],
)
def test_bad_limit_settings_fail_at_startup(cfg: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        settings_from_mapping({"limits": cfg})


def test_without_rules_limits_are_off() -> None:
    assert not settings_from_mapping({}).limits.enabled
    assert settings_from_mapping(
        {"limits": {"rules": [{"scope": "global", "rpm": 1}]}}
    ).limits.enabled


def test_prices_match_exactly_or_by_the_longest_prefix() -> None:
    prices = {
        "gpt-4o": Price(input=Decimal("2.5"), output=Decimal("10")),
        "gpt-4o-mini": Price(
            input=Decimal("0.15"), output=Decimal("0.6"), cached_input=Decimal("0.075")
        ),
    }
    assert price_for("gpt-4o-2024-11-20", prices) == UnitPrice(
        Decimal("2.5"), Decimal("2.5"), Decimal("10")
    )
    assert price_for("gpt-4o-mini-2024-07-18", prices) == UnitPrice(
        Decimal("0.15"), Decimal("0.075"), Decimal("0.6")
    )
    assert price_for("gpt-35-turbo", prices) is None


def test_costs_are_exact_micro_units_rounded_up() -> None:
    price = UnitPrice(Decimal("2.5"), Decimal("1.25"), Decimal("10"))
    # 1,000 prompt tokens of which 400 cached, 200 completion tokens:
    # 600 * 2.5 + 400 * 1.25 + 200 * 10 = 1500 + 500 + 2000 micro-units = $0.004
    assert cost_micro(price, 1000, 400, 200) == 4000
    assert cost_micro(UnitPrice(Decimal("0.15"), Decimal("0.15"), Decimal("0.6")), 3, 0, 0) == 1
    assert cost_micro(price, 10, 50, 0) == 13  # cached never exceeds the prompt
    assert to_micro(Decimal("12.5")) == 12_500_000
