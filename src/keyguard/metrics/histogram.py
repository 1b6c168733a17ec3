"""Histograms for values observed on the event loop: a list of bucket counts per series.

prometheus_client's :class:`~prometheus_client.Histogram` takes a lock and walks its buckets
for every observation; the monitor observes four values per request, so that is a measurable
share of its cost. Here an observation is one bisection and two additions (every observation
and every scrape runs on the event loop, so nothing needs a lock), and the registry reads the
series through the public collector interface (:class:`HistogramMetricFamily`), exposed
exactly as a prometheus_client histogram of the same name, labels and buckets would be.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["LoopHistogram", "Series"]


class Series:
    """One label combination: counts per bucket (the last is +Inf) and the sum."""

    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1  # bucket i: value <= bounds[i]
        self.total += value


class LoopHistogram(Collector):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        unit: str = "",
        registry: CollectorRegistry,
    ) -> None:
        bounds = tuple(float(b) for b in buckets if not math.isinf(b))
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("histogram buckets must be distinct and increasing")
        self._name = name
        self._doc = documentation
        self._labelnames = tuple(labelnames)
        self._bounds = bounds
        self._unit = unit
        self._le = [floatToGoString(b) for b in bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        self._series: dict[tuple[str, ...], Series] = {}
        registry.register(self)

    def labels(self, *values: str) -> Series:
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name} takes labels {self._labelnames}")
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = Series(self._bounds)
        return series

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            self._name, self._doc, labels=self._labelnames, unit=self._unit
        )
        for values, series in list(self._series.items()):
            cumulative, buckets = 0, []
            for le, count in zip(self._le, series.counts, strict=True):
                cumulative += count
                buckets.append((le, float(cumulative)))
            family.add_metric(list(values), buckets, series.total)
        yield family
