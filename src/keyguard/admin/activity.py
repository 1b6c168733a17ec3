"""What the audit log says, read for people: a search over its records and the activity of a
window (requests, tokens, cost, refusals and errors per time bucket; the top apps and keys by
spend). The operator console shows both; like every service function they need a role
(``viewer``) and are themselves recorded as an ``AdminAction``.

Both read the store's records by time from the start of the window and stop after
``max_scanned`` records (default 50,000): a page never walks an unbounded log. What was cut is
said in the answer (``truncated``). The aggregation is a pure function over the records read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ..audit.chain import Record
from ..audit.store import AuditStore, parse_iso
from ..errors import BadRequest
from ..events import AdminAction, EventBus
from .service import Actor

__all__ = ["Activity", "AuditView", "Bucket", "WINDOWS", "activity_of", "summary_of"]

#: the windows the overview offers: (name, length, bucket width)
WINDOWS: dict[str, tuple[timedelta, timedelta]] = {
    "hour": (timedelta(hours=1), timedelta(minutes=5)),
    "day": (timedelta(days=1), timedelta(hours=1)),
    "week": (timedelta(days=7), timedelta(hours=12)),
}
KINDS = ("request", "admin", "security")
MAX_NAMES = 10_000  # apps and keys counted in one window


@dataclass
class Bucket:
    start: datetime
    requests: int = 0
    tokens: int = 0
    cost: float = 0.0
    refusals: int = 0
    errors: int = 0


@dataclass
class Activity:
    window: str
    since: datetime
    buckets: list[Bucket]
    by_app: list[tuple[str, float, int]] = field(default_factory=list)  # name, cost, tokens
    by_key: list[tuple[str, float, int]] = field(default_factory=list)
    seen: frozenset[str] = frozenset()  # the key ids with a request in the window
    truncated: bool = False


def _data(record: Record) -> dict[str, Any]:
    try:
        data = orjson.loads(record.data)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _num(value: Any) -> float:
    """A number from a stored record: anything else (or not finite, or absurd) is 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) and abs(number) < 1e12 else 0.0


def activity_of(
    records: Iterable[tuple[datetime, dict[str, Any]]],
    *,
    window: str,
    now: datetime,
    top: int = 5,
) -> Activity:
    """The activity of ``window`` (a key of :data:`WINDOWS`) up to ``now`` from request
    records given as (time, body). A refusal is an answer Keyguard gave itself (4xx without an
    upstream call); an error a 5xx, whoever gave it."""
    length, width = WINDOWS[window]
    since = now - length
    count = int(length / width)
    buckets = [Bucket(since + i * width) for i in range(count)]
    apps: dict[str, list[float]] = {}
    keys: dict[str, list[float]] = {}
    for at, body in records:
        if not since <= at < now + width:
            continue
        bucket = buckets[min(int((at - since) / width), count - 1)]
        status = int(_num(body.get("status")))
        tokens = int(_num(body.get("prompt_tokens")) + _num(body.get("completion_tokens")))
        cost = _num(body.get("cost"))
        bucket.requests += 1
        bucket.tokens += tokens
        bucket.cost += cost
        if status >= 500:
            bucket.errors += 1
        elif status >= 400 and not body.get("upstream_status"):
            bucket.refusals += 1
        for table, name in ((apps, body.get("app")), (keys, body.get("key_id"))):
            if isinstance(name, str) and name and (name in table or len(table) < MAX_NAMES):
                spent = table.setdefault(name[:100], [0.0, 0.0])
                spent[0] += cost
                spent[1] += tokens

    def ranked(table: dict[str, list[float]]) -> list[tuple[str, float, int]]:
        rows = sorted(table.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[:top]
        return [(name, round(v[0], 6), int(v[1])) for name, v in rows]

    return Activity(window, since, buckets, ranked(apps), ranked(keys), frozenset(keys))


def summary_of(record: Record, body: dict[str, Any]) -> dict[str, str]:
    """One line of the audit search: who, what, on what, the outcome."""
    if record.kind == "admin":
        who, what = str(body.get("actor", "")), str(body.get("action", ""))
        target, outcome = str(body.get("target", "")), ""
    elif record.kind == "security":
        who, what = str(body.get("source") or ""), str(body.get("kind", ""))
        target = str(body.get("key_id") or body.get("app") or "")
        outcome = f"{body.get('severity', '')}: {body.get('summary', '')}"
    else:
        who = str(body.get("key_id") or body.get("source") or "")
        what = f"{body.get('operation') or ''} {body.get('deployment') or ''}".strip()
        target, outcome = str(body.get("app") or ""), f"{body.get('status')} {body.get('reason')}"
    return {
        "at": record.created,
        "kind": record.kind,
        "who": who[:120],
        "what": what[:120],
        "target": target[:160],
        "outcome": outcome[:300],
        "intact": "yes" if record.intact() else "NO",
    }


def _matches(body: dict[str, Any], key_id: str | None, app: str | None) -> bool:
    if key_id is not None:
        names = (body.get("key_id"), body.get("presented_key_id"), body.get("target"))
        if not any(isinstance(n, str) and key_id in n for n in names):
            return False
    if app is not None:
        apps = (body.get("app"), body.get("target"))
        if not any(isinstance(n, str) and app in n for n in apps):
            return False
    return True


class AuditView:
    def __init__(
        self,
        store: AuditStore | None,
        *,
        events: EventBus,
        max_scanned: int = 50_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._events = events
        self._max = max_scanned
        self._clock = clock

    def _allowed(self, actor: Actor, action: str, target: str) -> datetime:
        """Every role may read the audit log (``viewer`` is the lowest); the read is recorded."""
        now = self._clock()
        self._events.emit(AdminAction(now, actor.id, action, target, None, None))
        return now

    async def activity(self, actor: Actor, window: str) -> Activity:
        if window not in WINDOWS:
            raise BadRequest(f"'window' must be one of {', '.join(WINDOWS)}", reason="window")
        now = self._allowed(actor, "audit.activity", f"window:{window}")
        since = now - WINDOWS[window][0]
        rows: list[tuple[datetime, dict[str, Any]]] = []
        truncated = False
        scanned = 0
        if self._store is not None:
            async for record in self._store.records_by_time(since=since):
                scanned += 1  # every record read counts: security events are anyone's to make
                if scanned > self._max:
                    truncated = True
                    break
                if record.kind == "request":
                    rows.append((parse_iso(record.created), _data(record)))
        result = activity_of(rows, window=window, now=now)
        result.truncated = truncated
        return result

    async def search(
        self,
        actor: Actor,
        *,
        since: datetime,
        until: datetime | None = None,
        kind: str | None = None,
        key_id: str | None = None,
        app: str | None = None,
        limit: int = 200,
    ) -> tuple[list[dict[str, str]], bool]:
        """The newest ``limit`` records from ``since`` (to ``until``) matching every filter
        given, newest first, and whether the scan was cut at ``max_scanned``."""
        if kind is not None and kind not in KINDS:
            raise BadRequest(f"'kind' must be one of {', '.join(KINDS)}", reason="kind")
        self._allowed(actor, "audit.search", "audit")
        found: list[dict[str, str]] = []
        scanned = 0
        truncated = False
        if self._store is not None:
            async for record in self._store.records_by_time(since=since):
                scanned += 1
                if scanned > self._max:
                    truncated = True
                    break
                if until is not None and parse_iso(record.created) > until:
                    break
                if kind is not None and record.kind != kind:
                    continue
                body = _data(record)
                if _matches(body, key_id, app):
                    found.append(summary_of(record, body))
                    if len(found) > limit:
                        found.pop(0)
        found.reverse()
        return found, truncated
