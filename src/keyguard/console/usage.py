"""The usage bars of an app or a key: what ``AdminService.usage`` reports (the usage read-out,
``GET /admin/usage``: the counters the limits enforce, read without charging them, and the
spend from the audit log), as bars. ``usage_of`` is the one place the console asks for it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from ..admin.service import Actor, AdminService
from ..errors import BadRequest

__all__ = ["Bar", "Usage", "bars_of", "usage_from", "usage_of"]


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    used: float
    limit: float
    unit: str  # "tokens", "requests", "concurrent", a currency
    resets_at: str | None

    @property
    def percent(self) -> int:
        """How full, 0-100 (a limit of 0 is full)."""
        if self.limit <= 0:
            return 100
        return max(0, min(100, round(100 * self.used / self.limit)))

    def shown(self, value: float) -> str:
        """A number of this bar's unit: money to 4 places, counts whole."""
        if self.unit in ("tokens", "requests", "concurrent"):
            return f"{int(value):,}"
        return f"{value:,.4f}"

    @property
    def level(self) -> str:
        """The bar's colour class: ok, warn (from 75 %) or full (from 100 %)."""
        return "full" if self.percent >= 100 else "warn" if self.percent >= 75 else "ok"


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) else 0.0


def _text(value: Any, limit: int = 120) -> str:
    return str(value)[:limit] if value is not None else ""


def bars_of(usage: dict[str, Any]) -> list[Bar]:
    """The limits then the budgets of a usage read-out, one bar each (unknown fields are
    ignored, missing numbers read as 0)."""
    bars: list[Bar] = []
    for item in usage.get("limits") or ():
        if isinstance(item, dict):
            label = item.get("label") or f"{item.get('kind', '')} per {item.get('period', '')}"
            bars.append(
                Bar(
                    f"{_text(item.get('scope'), 20)} {_text(label)}".strip(),
                    _number(item.get("used")),
                    _number(item.get("limit")),
                    _text(item.get("kind"), 20),
                    _text(item.get("resets_at"), 40) or None,
                )
            )
    for item in usage.get("budgets") or ():
        if isinstance(item, dict):
            bars.append(
                Bar(
                    f"{_text(item.get('scope'), 20)} budget per {_text(item.get('period'), 20)}",
                    _number(item.get("used")),
                    _number(item.get("limit")),
                    _text(item.get("currency"), 10),
                    _text(item.get("resets_at"), 40) or None,
                )
            )
    return bars


@dataclass(frozen=True, slots=True)
class Usage:
    bars: list[Bar]
    requests: int  # the spend of the day so far (UTC), from the audit log
    tokens: int
    cost: float


def usage_from(answer: dict[str, Any]) -> Usage:
    spend = answer.get("spend")
    spend = spend if isinstance(spend, dict) else {}
    return Usage(
        bars_of(answer),
        int(_number(spend.get("requests"))),
        int(_number(spend.get("tokens"))),
        _number(spend.get("cost")),
    )


async def usage_of(
    service: AdminService, actor: Actor, scope: Literal["app", "key"], name: str
) -> Usage | None:
    """What ``scope`` ``name`` uses today (``AdminService.usage``, as ``GET /admin/usage``
    answers it); ``None`` where the gateway has no usage read-out."""
    try:
        answer = await service.usage(actor, (scope, name, "day"))
    except BadRequest as exc:
        if exc.reason == "no_usage":
            return None
        raise
    return usage_from(answer)
