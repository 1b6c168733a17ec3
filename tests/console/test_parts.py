"""The console's pure parts: sessions (bounded, expiring, constant-time CSRF), the usage bars
from a read-out (hostile values included), the activity per window and its charts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest

from keyguard.admin.activity import WINDOWS, AuditView, activity_of
from keyguard.admin.recording import Actor
from keyguard.console.charts import HEIGHT, charts_of
from keyguard.console.sessions import Sessions, csrf_ok
from keyguard.console.usage import usage_from
from keyguard.events import EventBus

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


async def test_a_session_ends_when_idle_or_old_and_on_close(
    sessions: Callable[..., Sessions],
) -> None:
    table = sessions(idle=timedelta(minutes=10), lifetime=timedelta(hours=1))
    sid, session = await table.open("TOKENID00001", NOW)
    assert session.token_id == "TOKENID00001"
    assert (await table.get(sid, NOW + timedelta(minutes=9))) is not None
    assert (await table.get(sid, NOW + timedelta(minutes=18))) is not None  # seen at 9
    assert (await table.get(sid, NOW + timedelta(minutes=29))) is None  # idle for 11
    sid, _ = await table.open("TOKENID00001", NOW)
    for minutes in range(5, 60, 5):
        assert (await table.get(sid, NOW + timedelta(minutes=minutes))) is not None
    assert (await table.get(sid, NOW + timedelta(minutes=60))) is None  # the absolute lifetime
    sid, _ = await table.open("TOKENID00001", NOW)
    await table.close(sid)
    assert (await table.get(sid, NOW)) is None


@pytest.mark.parametrize("forged", [None, "", "x" * 43, "x" * 10_000, "é"])
async def test_unknown_ids_and_wrong_csrf_tokens_open_nothing(
    sessions: Callable[..., Sessions], forged: str | None
) -> None:
    table = sessions()
    sid, session = await table.open("TOKENID00001", NOW)
    assert (await table.get(forged, NOW)) is None
    assert not csrf_ok(session, forged)
    assert csrf_ok(session, session.csrf) and sid != session.csrf
    got = await table.get(sid, NOW)
    assert got is not None and got.csrf == session.csrf


async def test_the_table_is_bounded_and_drops_the_stalest_session(
    sessions: Callable[..., Sessions],
) -> None:
    table = sessions(max_sessions=3)
    ids = [(await table.open("t", NOW + timedelta(minutes=i)))[0] for i in range(3)]
    assert await table.get(ids[0], NOW + timedelta(minutes=5))  # the first one is used again
    newest, _ = await table.open("t", NOW + timedelta(minutes=6))
    assert (await table.get(ids[1], NOW + timedelta(minutes=7))) is None  # the stalest went
    for sid in (ids[0], ids[2], newest):
        assert await table.get(sid, NOW + timedelta(minutes=7)), sid
    with pytest.raises(ValueError):
        sessions(max_sessions=0)


def test_bars_of_a_usage_read_out() -> None:
    answer: dict[str, Any] = {
        "limits": [
            {"scope": "key", "kind": "tokens", "period": "minute", "label": "tokens per minute",
             "limit": 1000, "used": 800, "remaining": 200, "resets_at": "2026-05-01T12:01:00Z"},
            {"scope": "app", "kind": "requests", "period": "day", "limit": 0, "used": 0},
        ],
        "budgets": [
            {"scope": "app", "period": "day", "currency": "USD", "limit": 5.0, "used": 6.0},
        ],
        "spend": {"requests": 3, "tokens": 36, "cost": 0.0002},
    }  # fmt: skip
    usage = usage_from(answer)
    assert (usage.requests, usage.tokens, usage.cost) == (3, 36, 0.0002)
    tokens, requests, budget = usage.bars
    assert (tokens.label, tokens.percent, tokens.level) == ("key tokens per minute", 80, "warn")
    assert tokens.shown(tokens.used) == "800" and budget.shown(budget.used) == "6.0000"
    assert (requests.label, requests.percent, requests.level) == (
        "app requests per day",
        100,
        "full",
    )
    assert (budget.percent, budget.level, budget.unit) == (100, "full", "USD")


@pytest.mark.parametrize(
    "hostile",
    [
        {},
        {"limits": "x", "budgets": None, "spend": []},
        {"limits": [1, None, {"used": "9", "limit": True, "label": "<b>" * 100}]},
        {"budgets": [{"used": float("nan"), "limit": -1}]},
        {"budgets": [{"used": float("nan"), "limit": 5}], "spend": {"cost": float("inf")}},
    ],
)
def test_a_malformed_read_out_gives_bars_not_errors(hostile: dict[str, Any]) -> None:
    for bar in usage_from(hostile).bars:
        assert 0 <= bar.percent <= 100 and len(bar.label) <= 150


def test_activity_buckets_requests_by_time_and_ranks_spenders() -> None:
    length, width = WINDOWS["hour"]
    rows: list[tuple[datetime, dict[str, Any]]] = [
        (NOW - timedelta(minutes=59), {"key_id": "k1", "app": "a", "status": 200,
                                       "upstream_status": 200, "prompt_tokens": 10,
                                       "completion_tokens": 5, "cost": 0.5}),
        (NOW - timedelta(minutes=1), {"key_id": "k2", "app": "b", "status": 429}),
        (NOW - timedelta(minutes=1), {"key_id": "k2", "app": "b", "status": 502,
                                      "upstream_status": 502}),
        (NOW - timedelta(hours=2), {"key_id": "old", "status": 200}),  # outside the window
        (NOW - timedelta(minutes=3), {"key_id": 7, "app": ["x"], "cost": "1e9", "status": "x"}),
        (NOW - timedelta(minutes=3), {"cost": float("nan"), "prompt_tokens": 1e300}),
    ]  # fmt: skip
    activity = activity_of(rows, window="hour", now=NOW)
    assert len(activity.buckets) == int(length / width)
    first, last = activity.buckets[0], activity.buckets[-1]
    assert (first.requests, first.tokens, first.cost) == (1, 15, 0.5)
    assert (last.requests, last.refusals, last.errors) == (4, 1, 1)
    assert [name for name, _, _ in activity.by_key] == ["k1", "k2"]
    assert activity.seen == {"k1", "k2"}
    charts = {c.name: c for c in charts_of(activity)}
    requests = charts["requests"]
    assert requests.total == "5" and requests.peak == "4"
    assert charts["cost"].total == "0.5000" and charts["tokens"].total == "15"
    assert requests.columns[-1].height == HEIGHT - 2 and requests.columns[1].height == 0
    assert all(0 <= c.y <= HEIGHT for c in requests.columns)


async def test_the_activity_scan_is_bounded_by_every_record_read_not_by_requests() -> None:
    """Security records are anyone's to make (a failed admin sign-in is one): a flood of them
    is read no further than the bound, and the answer says it was cut."""
    read = 0

    class Flooded:
        async def records_by_time(self, *, since: datetime | None = None) -> AsyncIterator[Any]:
            nonlocal read
            for _ in range(100_000):
                read += 1
                yield SimpleNamespace(kind="security", created="2026-05-01T12:00:00.000000Z")

    view = AuditView(cast(Any, Flooded()), events=EventBus(), max_scanned=10)
    result = await view.activity(Actor("admin-token:t1", "viewer"), "hour")
    assert result.truncated and read <= 11
