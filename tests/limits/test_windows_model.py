"""The pure arithmetic: windows, the fit check, remaining counts, soft thresholds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keyguard.limits.model import (
    Line,
    Plan,
    Refusal,
    check,
    crossed_soft,
    plan_of,
    remaining,
    retry_after_headers,
)
from keyguard.limits.windows import WindowCache, window


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def test_minute_hour_day_windows_are_aligned_on_utc() -> None:
    now = ts(2026, 3, 14, 15, 9, 26) + 0.5
    assert window("minute", now) == (ts(2026, 3, 14, 15, 9), ts(2026, 3, 14, 15, 10))
    assert window("hour", now) == (ts(2026, 3, 14, 15), ts(2026, 3, 14, 16))
    assert window("day", now) == (ts(2026, 3, 14), ts(2026, 3, 15))


def test_window_edges_belong_to_the_next_window() -> None:
    edge = ts(2026, 3, 14, 15, 10)
    assert window("minute", edge)[0] == edge
    assert window("minute", edge - 0.001)[1] == edge


@pytest.mark.parametrize(
    ("moment", "start", "end"),
    [
        ((2026, 1, 31, 23, 59, 59), (2026, 1, 1), (2026, 2, 1)),
        ((2026, 2, 1, 0, 0, 0), (2026, 2, 1), (2026, 3, 1)),
        ((2028, 2, 29, 12, 0, 0), (2028, 2, 1), (2028, 3, 1)),
        ((2026, 12, 31, 23, 59, 59), (2026, 12, 1), (2027, 1, 1)),
    ],
)
def test_month_windows_roll_over_at_midnight_utc(
    moment: tuple[int, ...], start: tuple[int, ...], end: tuple[int, ...]
) -> None:
    assert window("month", ts(*moment)) == (ts(*start), ts(*end))


def test_window_cache_recomputes_when_the_window_passes() -> None:
    cache = WindowCache()
    first = cache.get("minute", ts(2026, 1, 1, 0, 0, 59))
    assert cache.get("minute", ts(2026, 1, 1, 0, 0, 30)) == first
    assert cache.get("minute", ts(2026, 1, 1, 0, 1, 0)) == (
        ts(2026, 1, 1, 0, 1),
        ts(2026, 1, 1, 0, 2),
    )


Charge = tuple[Line, int]  # a line and what the request adds to it


def line(kind: str = "tokens", limit: int = 100, amount: int = 10, end: float = 60.0) -> Charge:
    return Line(f"k:{kind}:{limit}:{amount}", kind, limit, end), amount  # type: ignore[arg-type]


def check_(charges: list[Charge], levels: list[int], now: float) -> Refusal | None:
    return check([c[0] for c in charges], [c[1] for c in charges], levels, now)


def compiled(*charges: Charge) -> Plan:
    plan = plan_of([c[0] for c in charges])
    assert plan is not None
    return plan


def test_a_request_fits_up_to_the_limit_exactly() -> None:
    assert check_([line(amount=40)], [60], now=10.0) is None
    refusal = check_([line(amount=41)], [60], now=10.0)
    assert refusal is not None and refusal.retry_after_s == pytest.approx(50.0)


def test_every_line_must_fit_and_the_longest_wait_is_reported() -> None:
    lines = [line("tokens", end=60.0), line("requests", limit=5, amount=1, end=60.0)]
    day = line("tokens", limit=1000, amount=10, end=86_400.0)
    assert check_([*lines, day], [0, 0, 0], now=1.0) is None
    refusal = check_([*lines, day], [95, 5, 995], now=1.0)
    assert refusal is not None and refusal.line is day[0] and refusal.amount == 10
    assert refusal.retry_after_s == pytest.approx(86_399.0)


def test_a_request_larger_than_the_limit_can_never_pass() -> None:
    refusal = check_([line(amount=101), line(end=3600.0)], [0, 100], now=0.0)
    assert refusal is not None and refusal.retry_after_s is None


def test_concurrency_refusal_retries_after_a_second() -> None:
    refusal = check_([(Line("c", "concurrent", 2, 0.0), 1)], [2], now=5.0)
    assert refusal is not None and refusal.retry_after_s == 1.0


def test_a_window_in_debt_refuses_until_it_rolls_over() -> None:
    # Settlement may charge more than was reserved (the real usage): the window is over.
    assert check_([line(amount=1)], [130], now=0.0) is not None


def test_remaining_reports_the_tightest_token_and_request_limits() -> None:
    plan = compiled(
        line("tokens", limit=1000),
        line("tokens", limit=50),
        line("requests", limit=10, amount=1),
        line("cost", limit=5),
    )
    # the levels the request found; its 10 tokens and 1 request are added
    assert remaining(plan, [90, 10, 2, 5], 10) == (30, 7)
    assert remaining(compiled(line("cost")), [1], 0) == (None, None)
    assert remaining(compiled(line("tokens", limit=10)), [5], 10) == (0, None)  # over: none


def test_a_plan_compiles_keys_limits_and_pickers() -> None:
    plan = compiled(
        line("tokens", limit=1000),
        line("requests", limit=10, amount=1),
        (Line("c", "concurrent", 2, 0.0), 1),
        line("cost", limit=5),
    )
    assert plan.limits == (1000, 10, 2, 5) and plan.keys[2] == "c"
    assert plan.windowed == ((plan.keys[0], 60.0), (plan.keys[1], 60.0), (plan.keys[3], 60.0))
    assert plan.amounts(300, 7) == (300, 1, 1, 7)
    assert plan.settled_keys == (plan.keys[0], "c", plan.keys[3]) and plan.slots == ("c",)
    assert plan.deltas(-20, 3) == (-20, -1, 3)
    assert plan_of([]) is None


def test_soft_threshold_is_crossed_once() -> None:
    budget = Line("b", "cost", 1000, 60.0, soft=800)
    assert crossed_soft(budget, 790, 800)
    assert not crossed_soft(budget, 800, 810)
    assert not crossed_soft(budget, 700, 799)
    assert not crossed_soft(line()[0], 0, 100)


def test_retry_after_headers_round_up() -> None:
    assert retry_after_headers(1.2) == {"retry-after": "2", "retry-after-ms": "1200"}
    assert retry_after_headers(0.0004) == {"retry-after": "1", "retry-after-ms": "1"}
