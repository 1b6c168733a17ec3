"""Bar charts as inline SVG geometry, computed here (pure) and drawn by a template macro: no
script, no inline style, nothing the Content-Security-Policy would have to allow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..admin.activity import Activity, Bucket

__all__ = ["Chart", "Column", "charts_of"]

WIDTH = 360
HEIGHT = 90
SERIES = (
    ("requests", "Requests"),
    ("tokens", "Tokens"),
    ("cost", "Cost"),
    ("refusals", "Refusals"),
    ("errors", "Errors"),
)


@dataclass(frozen=True, slots=True)
class Column:
    x: float
    y: float
    width: float
    height: float
    title: str  # the tooltip: the bucket's start and its value


@dataclass(frozen=True, slots=True)
class Chart:
    name: str
    title: str
    total: str
    peak: str
    columns: list[Column]
    width: int = WIDTH
    height: int = HEIGHT


def _value(bucket: Bucket, name: str) -> float:
    return float(getattr(bucket, name))


def _shown(value: float, name: str) -> str:
    return f"{value:.4f}" if name == "cost" else f"{int(value):,}"


def _when(at: datetime, window: str) -> str:
    return at.strftime("%H:%M" if window == "hour" else "%a %d %b %H:%M")


def charts_of(activity: Activity) -> list[Chart]:
    """One chart per series of ``activity``, columns scaled to the series' peak."""
    charts = []
    count = max(1, len(activity.buckets))
    step = WIDTH / count
    for name, title in SERIES:
        values = [_value(b, name) for b in activity.buckets]
        peak = max(values, default=0.0)
        columns = []
        for i, (bucket, value) in enumerate(zip(activity.buckets, values, strict=True)):
            height = 0.0 if peak <= 0 else max(1.0, (HEIGHT - 2) * value / peak) if value else 0.0
            columns.append(
                Column(
                    x=round(i * step + 1, 2),
                    y=round(HEIGHT - height, 2),
                    width=round(max(1.0, step - 2), 2),
                    height=round(height, 2),
                    title=f"{_when(bucket.start, activity.window)}: {_shown(value, name)}",
                )
            )
        charts.append(Chart(name, title, _shown(sum(values), name), _shown(peak, name), columns))
    return charts
