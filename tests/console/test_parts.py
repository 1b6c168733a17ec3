"""The console's pure parts: sessions (bounded per actor and in all, expiring, constant-time
CSRF), the sign-in throttle, the usage bars from a read-out (hostile values included), the
activity per window and its charts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest

from keyguard.admin.activity import WINDOWS, AuditView, activity_of
from keyguard.admin.recording import Actor
from keyguard.console.charts import HEIGHT, charts_of
from keyguard.console.sessions import EntraIdentity, Sessions, csrf_ok
from keyguard.console.throttle import Attempt, SignInThrottle
from keyguard.console.usage import usage_from
from keyguard.errors import ServiceUnavailable
from keyguard.events import EventBus

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
OID = "00000000-0000-4000-8000-0000000000e1"


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


async def test_one_actor_signing_in_again_and_again_ends_only_its_own_oldest_sessions(
    sessions: Callable[..., Sessions],
) -> None:
    """A viewer (anyone with a valid credential) in a sign-in loop: its own oldest sessions
    end, nobody else's, and the table does not grow past the actor's cap."""
    table = sessions(max_sessions=10, max_per_actor=3)
    victim, _ = await table.open("VICTIM000001", NOW)
    entra = EntraIdentity(OID, "operator", NOW + timedelta(hours=1))
    other, _ = await table.open("", NOW, entra)
    flood = [
        (await table.open("VIEWER000001", NOW + timedelta(seconds=i)))[0] for i in range(1, 40)
    ]
    later = NOW + timedelta(minutes=1)
    assert await table.get(victim, later) and await table.get(other, later)
    assert [await table.get(sid, later) is not None for sid in flood[-4:]] == [0, 1, 1, 1]
    assert not [sid for sid in flood[:-3] if await table.get(sid, later)]
    # an Entra identity is one actor however often it signs in, and not the token's
    again = [(await table.open("", later, entra))[0] for _ in range(3)]
    assert await table.get(other, later) is None  # its own oldest went
    assert all([await table.get(sid, later) for sid in again + flood[-3:] + [victim]])
    with pytest.raises(ValueError):
        sessions(max_per_actor=0)


async def test_a_full_table_refuses_a_sign_in_and_ends_no_one(
    sessions: Callable[..., Sessions],
) -> None:
    table = sessions(max_sessions=3, max_per_actor=2, idle=timedelta(minutes=10))
    a1, _ = await table.open("ACTOR0000001", NOW)
    b, _ = await table.open("ACTOR0000002", NOW + timedelta(minutes=5))
    c, _ = await table.open("ACTOR0000003", NOW + timedelta(minutes=5))
    with pytest.raises(ServiceUnavailable) as full:
        await table.open("ACTOR0000004", NOW + timedelta(minutes=6))
    assert full.value.status == 503
    later = NOW + timedelta(minutes=6)
    assert all([await table.get(sid, later) for sid in (a1, b, c)])  # nobody was ended
    # an actor at its cap in a full table makes room among its own sessions only
    await table.close(c)
    a2, _ = await table.open("ACTOR0000001", later)
    a3, _ = await table.open("ACTOR0000001", later + timedelta(seconds=1))
    assert await table.get(a1, later) is None and await table.get(a2, later)
    assert await table.get(a3, later) and await table.get(b, later)
    # the expired make room: at 16 minutes the idle b has ended
    d, _ = await table.open("ACTOR0000004", NOW + timedelta(minutes=16, seconds=30))
    assert await table.get(b, NOW + timedelta(minutes=16, seconds=30)) is None
    assert await table.get(d, NOW + timedelta(minutes=16, seconds=30))
    with pytest.raises(ValueError):
        sessions(max_sessions=0)


def test_sign_in_attempts_are_throttled_per_address() -> None:
    throttle = SignInThrottle(burst=3, per_s=0.5)
    t = 1000.0
    assert [throttle.attempt("203.0.113.7", t).allowed for _ in range(3)] == [True] * 3
    refused = throttle.attempt("203.0.113.7", t)
    assert refused == Attempt(False, 2, first=True)
    assert throttle.attempt("203.0.113.7", t + 1) == Attempt(False, 1, first=False)
    assert throttle.attempt("203.0.113.8", t).allowed  # another address: its own bucket
    assert throttle.attempt("203.0.113.7", t + 2.5).allowed  # a token back after 2 s
    assert throttle.attempt("203.0.113.7", t + 2.5).first  # refused again: a new run
    # one IPv6 host holds a /64: counted as one; the next /64 is another client
    for host in ("2001:db8::1", "2001:db8::2", "2001:db8::ffff:1"):
        assert throttle.attempt(host, t).allowed
    assert not throttle.attempt("2001:db8::3", t).allowed
    assert throttle.attempt("2001:db8:0:1::1", t).allowed
    # a clock stepping back neither refills nor breaks a bucket, then or when it steps forward
    assert not throttle.attempt("203.0.113.7", t + 2.5).allowed  # drained at t + 2.5
    assert not throttle.attempt("203.0.113.7", t - 100).allowed
    assert not throttle.attempt("203.0.113.7", t + 2.5).allowed  # no extra attempt
    assert not throttle.attempt("203.0.113.7", t + 3.9).allowed  # 0.25 then, 1 at t + 4
    assert throttle.attempt("203.0.113.7", t + 4.1).allowed
    # no address, or a hostile one: one shared bucket each, no error
    for address in (None, "", "x" * 10_000, "é"):
        throttle.attempt(address, t)
    with pytest.raises(ValueError):
        SignInThrottle(burst=0)


def test_only_failed_sign_ins_drain_a_bucket() -> None:
    throttle = SignInThrottle(burst=2, per_s=0.001)
    for _ in range(50):  # an operator signing in again and again: each one given back
        assert throttle.attempt("198.51.100.1", 0.0).allowed
        throttle.refund("198.51.100.1", 0.0)
    assert throttle.attempt("198.51.100.1", 0.0).allowed  # two failures spend the burst
    assert throttle.attempt("198.51.100.1", 0.0).allowed
    throttle.refund("198.51.100.1", 0.0)  # a refund never holds more than the burst
    throttle.refund("198.51.100.1", 0.0)
    throttle.refund("198.51.100.1", 0.0)
    assert [throttle.attempt("198.51.100.1", 0.0).allowed for _ in range(3)] == [1, 1, 0]
    # a look takes nothing, and is refused only when the bucket is empty
    assert not throttle.attempt("198.51.100.1", 0.0, take=False).allowed
    for _ in range(5):
        assert throttle.attempt("198.51.100.2", 0.0, take=False).allowed
    assert throttle.attempt("198.51.100.2", 0.0).allowed


def test_the_throttle_is_bounded() -> None:
    throttle = SignInThrottle(burst=1, per_s=0.001, max_addresses=100)
    for i in range(5_000):
        throttle.attempt(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 0.0)
    assert len(throttle) == 100
    assert not throttle.attempt("10.0.19.135", 0.0).allowed  # the most recent are kept


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
