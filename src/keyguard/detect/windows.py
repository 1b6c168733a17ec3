"""Small, bounded, O(1)-amortised counters over time; every method takes ``now`` (epoch seconds).

* :class:`Recent`   distinct values seen within a span (value -> last time seen);
* :class:`Events`   how many events happened within a span;
* :class:`Rate`     a sum (tokens, cost) over a sliding span, in fixed buckets;
* :class:`Peak`     a maximum that decays with a half-life (the baseline the velocity rule uses).

They never read a clock, so the detectors replay weeks of traffic in seconds with an injected one.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Recent", "Events", "Rate", "Peak"]


class Recent:
    """Distinct values seen in the last ``span`` seconds; at most ``cap`` are remembered."""

    __slots__ = ("_seen", "_span", "_cap", "_fresh", "_sweep_at")

    def __init__(self, span: float, cap: int = 256) -> None:
        self._seen: dict[str, float] = {}  # ordered by last sighting, oldest first
        self._span = span
        self._cap = cap
        self._fresh = span / 128  # a value seen again within this is not moved
        self._sweep_at = float("inf")  # the oldest value cannot expire before this

    def add(self, value: str, now: float) -> None:
        seen = self._seen
        last = seen.get(value)
        if last is None:
            seen[value] = now
            expires = now + self._span
            if expires < self._sweep_at:
                self._sweep_at = expires
            if now <= self._sweep_at and len(seen) <= self._cap:
                return  # nothing can have expired yet: no sweep
        else:
            if now - last < self._fresh:
                return  # seen a moment ago: the window is exact enough
            del seen[value]
            seen[value] = now
        cutoff = now - self._span
        while seen:
            first = next(iter(seen))
            if seen[first] >= cutoff and len(seen) <= self._cap:
                self._sweep_at = seen[first] + self._span
                return
            del seen[first]
        self._sweep_at = float("inf")

    def count(self, now: float, extra: str | None = None) -> int:
        """Distinct values within the span, counting ``extra`` as seen now."""
        cutoff = now - self._span
        n = 0
        for t in reversed(self._seen.values()):
            if t < cutoff:
                break
            n += 1
        if extra is not None and self._seen.get(extra, cutoff - 1) < cutoff:
            n += 1
        return n

    def has(self, value: str, now: float) -> bool:
        """Whether ``value`` was seen within the span."""
        return self._seen.get(value, now - self._span - 1) >= now - self._span

    def values(self, now: float) -> list[str]:
        cutoff = now - self._span
        return [v for v, t in self._seen.items() if t >= cutoff]


class Events:
    """Events within the last ``span`` seconds (at most ``cap`` remembered)."""

    __slots__ = ("_times", "_span")

    def __init__(self, span: float, cap: int = 4096) -> None:
        self._times: deque[float] = deque(maxlen=cap)
        self._span = span

    def add(self, now: float) -> None:
        self._times.append(now)

    def count(self, now: float) -> int:
        times, cutoff = self._times, now - self._span
        while times and times[0] < cutoff:
            times.popleft()
        return len(times)


class Rate:
    """The sum of amounts added within the last ``span`` seconds, in ``buckets`` steps."""

    __slots__ = ("_buckets", "width", "_n", "_sum")

    def __init__(self, span: float, buckets: int = 12) -> None:
        self._buckets: deque[list[float]] = deque()  # [bucket index, sum]
        self.width = span / buckets  # seconds a bucket
        self._n = buckets
        self._sum = 0.0

    def bucket(self, now: float) -> int:
        return int(now // self.width)

    def add(self, now: float, amount: float) -> None:
        b = int(now // self.width)  # self.bucket(now), without the call: twice a request
        buckets = self._buckets
        if buckets and buckets[-1][0] == b:
            buckets[-1][1] += amount
        else:
            buckets.append([b, amount])
        self._sum += amount

    def most(self) -> float:
        """At most the sum within the span (expired buckets may still count): a bound to
        leave at once with, without expiring anything."""
        return self._sum

    def total(self, now: float) -> float:
        oldest, buckets = int(now // self.width) - self._n, self._buckets
        while buckets and buckets[0][0] <= oldest:
            self._sum -= buckets.popleft()[1]
        if not buckets:
            self._sum = 0.0  # no drift from float rounding
        return self._sum


class Peak:
    """A decaying maximum: ``value`` halves every ``half_life`` seconds unless beaten."""

    __slots__ = ("value", "at", "_half_life")

    def __init__(self, half_life: float, value: float = 0.0, at: float = 0.0) -> None:
        self.value = value
        self.at = at
        self._half_life = half_life

    def current(self, now: float) -> float:
        if self.value <= 0.0:
            return 0.0
        age = now - self.at
        if age <= 0.0:  # max(0.0, age) without the call: several times a request
            return self.value
        decay: float = 0.5 ** (age / self._half_life)
        return self.value * decay

    def offer(self, now: float, x: float) -> None:
        if x > self.current(now):
            self.value, self.at = x, now
