"""The usage read-out's pure parts and its read of the audit log: the query a caller may send,
the periods, and spend summed from records a hostile store writer may have forged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from keyguard.admin.usage import MAX_SPEND_ROWS, parse_query, since_of, usage_json
from keyguard.audit.spend import MAX_NAME, Match, Spend, read_spend
from keyguard.errors import BadRequest
from keyguard.store.base import Store
from keyguard.store.packing import pack
from keyguard.store.schema import audit_records

NOW = datetime(2026, 5, 14, 10, 30, 15, tzinfo=UTC)  # a Thursday


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"app": "a", "key": "k"}, "at most one of app, key, team or deployment (got app and key)"),
        ({"team": "t", "deployment": "d", "app": "a"}, "got app and team and deployment"),
        ({"apps": "a"}, "unknown query parameter 'apps'"),
        ({"period": "year"}, "'period' must be one of hour, day, week, month, not 'year'"),
        ({"app": ""}, "'app' needs a name of 1 to 128 characters"),
        ({"key": "x" * 129}, "'key' needs a name"),
        ({"kgk_" + "A" * 40: "1"}, "unknown query parameter "),
    ],
)
def test_a_bad_query_is_refused_naming_the_fix(query: dict[str, str], message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_query(query)
    assert message in str(caught.value)
    assert "kgk_" not in str(caught.value)  # a pasted secret is not repeated


def test_a_query_names_one_scope_and_a_period() -> None:
    assert parse_query({}) == ("all", None, "day")
    assert parse_query({"key": "K", "period": "month"}) == ("key", "K", "month")
    assert parse_query({"deployment": "gpt-4o", "period": "hour"}) == (
        "deployment",
        "gpt-4o",
        "hour",
    )


def test_periods_start_on_the_utc_calendar() -> None:
    assert since_of("hour", NOW) == datetime(2026, 5, 14, 10, tzinfo=UTC)
    assert since_of("day", NOW) == datetime(2026, 5, 14, tzinfo=UTC)
    assert since_of("week", NOW) == datetime(2026, 5, 11, tzinfo=UTC)  # Monday
    assert since_of("month", NOW) == datetime(2026, 5, 1, tzinfo=UTC)


def test_forged_values_count_as_nothing_and_names_are_cut() -> None:
    spend = Spend()
    for record in (
        {"key_id": "K", "app": "a", "deployment": "d", "prompt_tokens": 5, "completion_tokens": 7,
         "cost": 0.5},
        {"key_id": "K", "prompt_tokens": -5, "completion_tokens": "7", "cost": float("nan")},
        {"key_id": "K", "prompt_tokens": 10**12, "completion_tokens": True, "cost": -3},
        {"key_id": ["K"], "app": 5, "deployment": "", "cost": 1e300},
        {"key_id": "x" * 1000, "prompt_tokens": 1},
    ):  # fmt: skip
        spend.add(record)
    assert (spend.total.requests, spend.total.tokens, spend.total.cost) == (5, 13, 0.5)
    assert spend.by_key["K"].requests == 3 and spend.by_key["K"].tokens == 12
    assert "x" * MAX_NAME in spend.by_key and len(spend.by_key) == 2
    assert list(spend.by_app) == ["a"] and list(spend.by_deployment) == ["d"]


def test_the_answer_keeps_the_biggest_spenders_and_says_it_cut_the_rest() -> None:
    spend = Spend()
    for i in range(MAX_SPEND_ROWS + 5):
        spend.add({"key_id": f"k{i:03}", "cost": float(i), "prompt_tokens": 1})
    answer = usage_json(
        "all", None, NOW, [], spend, period="day", since=since_of("day", NOW), currency="USD"
    )
    by_key = answer["spend"]["by_key"]
    assert len(by_key) == MAX_SPEND_ROWS and answer["spend"]["by_key_truncated"]
    assert by_key[0] == {"key_id": f"k{MAX_SPEND_ROWS + 4:03}", "requests": 1, "tokens": 1,
                         "cost": float(MAX_SPEND_ROWS + 4)}  # fmt: skip
    assert not answer["spend"]["by_app_truncated"] and answer["spend"]["audited"]
    assert answer["now"] == "2026-05-14T10:30:15Z" and answer["limits"] == []
    off = usage_json("all", None, NOW, [], None, period="day", since=NOW, currency="USD")
    assert not off["spend"]["audited"] and off["spend"]["requests"] == 0


def _row(seq: int, at: datetime, data: Any, *, kind: str = "request", packed: bool = True,
         raw: bytes | None = None) -> dict[str, Any]:  # fmt: skip
    text = orjson.dumps(data).decode()
    return {
        "chain": "t0000000000000aa",
        "seq": seq,
        "created_at": at,
        "kind": kind,
        "data": "" if packed else text,
        "packed": raw if raw is not None else (pack(text) if packed else None),
        "prev_hash": "0" * 64,
        "hash": f"{seq:064d}",
    }


async def test_spend_is_read_from_packed_and_plain_rows_of_the_period_only(store: Store) -> None:
    engine: AsyncEngine = store.engine  # type: ignore[attr-defined]
    good = {"key_id": "K", "app": "a", "deployment": "d", "prompt_tokens": 3,
            "completion_tokens": 4, "cost": 0.25}  # fmt: skip
    rows = [
        _row(1, NOW - timedelta(days=1), good),  # before the period
        _row(2, NOW, good),
        _row(3, NOW, good, packed=False),
        _row(4, NOW, {"actor": "cli:x", "cost": 99}, kind="admin"),
        _row(5, NOW, good, raw=b"\x01not deflate"),  # damaged: nothing
        _row(6, NOW, good, raw=b"\x09unknown format"),
        _row(7, NOW, [1, 2, 3]),  # not an object
        _row(8, NOW + timedelta(seconds=1), {**good, "key_id": "L", "app": "b"}),
    ]
    async with engine.begin() as conn:
        await conn.execute(audit_records.insert(), rows)
    since = NOW - timedelta(minutes=1)
    spend = await read_spend(engine, since, Match())
    assert (spend.total.requests, spend.total.tokens, spend.total.cost) == (3, 21, 0.75)
    assert spend.scanned == 6 and not spend.truncated  # request rows of the period only
    assert (await read_spend(engine, since, Match(key_id="L"))).total.requests == 1
    assert (await read_spend(engine, since, Match(apps=("a",)))).total.requests == 2
    assert (await read_spend(engine, since, Match(deployment="x"))).total.requests == 0
    cut = await read_spend(engine, since, Match(), max_rows=2)
    assert cut.truncated and cut.scanned == 2 and cut.total.requests == 2
