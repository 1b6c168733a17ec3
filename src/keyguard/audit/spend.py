"""Spend over a period, summed from the audit log's request records: requests, tokens and
cost in all, per key, per app and per deployment (the usage read-out's ``spend``).

The audit log is the record every replica writes, so the sums cover the whole cluster (as far
as the records have been flushed: ``monitor.audit.flush_interval_s``). The read is bounded: it
walks the request records of the period through the ``created_at`` index, a page at a time,
and stops after ``max_rows`` records (the answer then says it is partial). A record's fields
come from the store and are checked as such: a value of the wrong type or out of range is
read as nothing, a name cut to :data:`MAX_NAME` characters.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ..store.packing import unpack
from ..store.schema import audit_records
from ..store.sql import translate_errors
from .rows import after_place

__all__ = ["Spend", "Totals", "Match", "read_spend", "MAX_ROWS", "MAX_NAME"]

#: At most this many request records are read for one answer.
MAX_ROWS = 200_000
#: At most this many distinct keys, apps or deployments are summed separately.
MAX_GROUPS = 10_000
MAX_NAME = 64
_PAGE = 2000
_MAX_TOKENS = 100_000_000  # one request's tokens, at most (anything above is a forged record)
_MAX_COST = 1_000_000.0


@dataclass(slots=True)
class Totals:
    requests: int = 0
    tokens: int = 0
    cost: float = 0.0

    def add(self, tokens: int, cost: float) -> None:
        self.requests += 1
        self.tokens += tokens
        self.cost += cost


@dataclass(frozen=True, slots=True)
class Match:
    """Which request records count: all (every field ``None``), or those of one key, one
    app, the apps of a team or one deployment."""

    key_id: str | None = None
    apps: Collection[str] | None = None
    deployment: str | None = None

    def __call__(self, record: Mapping[str, Any]) -> bool:
        if self.key_id is not None and record.get("key_id") != self.key_id:
            return False
        if self.apps is not None and record.get("app") not in self.apps:
            return False
        return self.deployment is None or record.get("deployment") == self.deployment


@dataclass(slots=True)
class Spend:
    total: Totals = field(default_factory=Totals)
    by_key: dict[str, Totals] = field(default_factory=dict)
    by_app: dict[str, Totals] = field(default_factory=dict)
    by_deployment: dict[str, Totals] = field(default_factory=dict)
    scanned: int = 0
    truncated: bool = False  # max_rows reached: the sums cover the oldest part of the period
    groups_truncated: bool = False  # more than MAX_GROUPS names in one grouping

    def add(self, record: Mapping[str, Any]) -> None:
        tokens = _count(record.get("prompt_tokens")) + _count(record.get("completion_tokens"))
        cost = _cost(record.get("cost"))
        self.total.add(tokens, cost)
        for groups, name in (
            (self.by_key, record.get("key_id")),
            (self.by_app, record.get("app")),
            (self.by_deployment, record.get("deployment")),
        ):
            if not isinstance(name, str) or not name:
                continue
            name = name[:MAX_NAME]
            totals = groups.get(name)
            if totals is None:
                if len(groups) >= MAX_GROUPS:
                    self.groups_truncated = True
                    continue
                totals = groups[name] = Totals()
            totals.add(tokens, cost)


def _count(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_TOKENS:
        return 0
    return value


def _cost(value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        return 0.0
    return float(value) if 0 <= value <= _MAX_COST else 0.0


async def read_spend(
    engine: AsyncEngine, since: datetime, match: Match, *, max_rows: int = MAX_ROWS
) -> Spend:
    """The spend of the request records written at or after ``since`` that ``match``."""
    c = audit_records.c
    spend = Spend()
    place: tuple[datetime, str, int] | None = None
    while spend.scanned < max_rows:
        page = min(_PAGE, max_rows - spend.scanned)
        query = (
            select(c.created_at, c.chain, c.seq, c.data, c.packed)
            .where(c.created_at >= since, c.kind == "request")
            .order_by(c.created_at, c.chain, c.seq)
            .limit(page)
        )
        if place is not None:
            query = query.where(after_place(c, place))
        async with translate_errors("read the audit log"), engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        for created_at, chain, seq, data, packed in rows:
            spend.scanned += 1
            record = _record(data, packed)
            if record is not None and match(record):
                spend.add(record)
            place = (created_at, chain, int(seq))
        if len(rows) < page:
            return spend
    spend.truncated = True
    return spend


def _record(data: str | None, packed: bytes | None) -> dict[str, Any] | None:
    """A request record's JSON object; ``None`` for a row that holds none (damaged, forged)."""
    try:
        value = orjson.loads(data if data else unpack(packed or b""))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
