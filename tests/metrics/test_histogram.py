"""LoopHistogram is exposed exactly as prometheus_client's own histogram would be."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from keyguard.metrics.histogram import LoopHistogram

BUCKETS = (0.0001, 0.00025, 0.001, 0.5, 2)
VALUES = [0.0, 0.0001, 0.00010001, 0.0003, 0.001, 0.2, 0.5, 1.9, 2.0, 3.5, 1e9, 0.00025]


def _lines(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return sorted(ln for ln in text.splitlines() if "_created" not in ln)


@pytest.mark.parametrize("unit", ["", "seconds"])
def test_same_exposition_as_prometheus_client(unit: str) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = LoopHistogram("x_latency", "Doc.", ["op", "dep"], buckets=BUCKETS, unit=unit,
                         registry=ours)  # fmt: skip
    ref = Histogram("x_latency", "Doc.", ["op", "dep"], buckets=BUCKETS, unit=unit,
                    registry=theirs)  # fmt: skip
    for i, value in enumerate(VALUES):
        labels = ("chat", "gpt-4o" if i % 3 else "o3")
        mine.labels(*labels).observe(value)
        ref.labels(*labels).observe(value)
    assert _lines(ours) == _lines(theirs)


def test_bucket_edges_are_inclusive() -> None:
    registry = CollectorRegistry()
    h = LoopHistogram("edge", "Doc.", [], buckets=(1, 2), registry=registry)
    for value in (1, 2, 2.0000001):
        h.labels().observe(value)
    assert h.labels().counts == [1, 1, 1]


def test_rejects_wrong_labels_and_unsorted_buckets() -> None:
    registry = CollectorRegistry()
    h = LoopHistogram("lbl", "Doc.", ["op"], buckets=(1,), registry=registry)
    with pytest.raises(ValueError, match="takes labels"):
        h.labels()
    with pytest.raises(ValueError, match="increasing"):
        LoopHistogram("bad", "Doc.", [], buckets=(2, 1), registry=registry)
